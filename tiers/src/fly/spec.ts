import { z } from 'zod';
import { InvalidInputError } from '../errors.ts';
import { LIMITS } from '../limits.ts';
import type { PreviewSpec } from '../types.ts';
import { contentBytes, Encoding, type FileOp, ProjectPath, TemplateName } from '../wire.ts';

/** A preview id: what the router mints, safe in URLs, metadata and host names. */
export const PreviewId = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'at most 64 characters')
  .regex(/^[a-zA-Z0-9_-]+$/, 'letters, digits, "_" or "-" only');

const FileContent = z.union([z.string(), z.object({ content: z.string(), encoding: Encoding })]);

const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name');

export const PreviewSpecSchema = z.object({
  previewId: PreviewId,
  userId: z.string().min(1).max(128),
  template: TemplateName,
  files: z
    .record(ProjectPath, FileContent)
    .refine((f) => Object.keys(f).length <= LIMITS.projectFiles, `at most ${LIMITS.projectFiles} files`),
  env: z.record(EnvName, z.string().max(32_768)).optional(),
});

/** Parses a spec at the tier's edge; the error names the field and the rule. */
export function parsePreviewSpec(spec: unknown): PreviewSpec {
  const r = PreviewSpecSchema.safeParse(spec);
  if (r.success) return r.data as PreviewSpec;
  const msg = r.error.issues
    .slice(0, 5)
    .map((i) => `spec.${i.path.map(String).join('.')}: ${i.message}`)
    .join('; ');
  const onPath = r.error.issues.some((i) => i.path[0] === 'files');
  throw new InvalidInputError(onPath ? 'invalid_path' : 'invalid_spec', msg);
}

/** A project's files as put ops, split into batches within the wire limits. */
export function filesToBatches(files: PreviewSpec['files']): FileOp[][] {
  const batches: FileOp[][] = [];
  let current: FileOp[] = [];
  let bytes = 0;
  for (const [path, v] of Object.entries(files)) {
    const op: FileOp =
      typeof v === 'string'
        ? { op: 'put', path, content: v, encoding: 'utf8' }
        : { op: 'put', path, content: v.content, encoding: v.encoding };
    const n = contentBytes(op as { content: string; encoding: 'utf8' | 'base64' });
    if (current.length && (current.length >= LIMITS.batchOps || bytes + n > LIMITS.batchBytes)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(op);
    bytes += n;
  }
  if (current.length) batches.push(current);
  return batches;
}
