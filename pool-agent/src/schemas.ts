import { AppEnv, LIMITS, pathProblem, TemplateName } from '@preview/tiers';
import { z } from 'zod';

export const PreviewIdSchema = z
  .string()
  .regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, "_" or "-"');

const FileValue = z.union([
  z.string(),
  z.object({ content: z.string(), encoding: z.enum(['utf8', 'base64']) }),
]);

/** `POST /v1/previews`: what to run. Paths follow the project's path rules (`pathProblem`). */
export const ClaimBody = z.object({
  previewId: PreviewIdSchema,
  template: TemplateName,
  files: z.record(z.string(), FileValue).superRefine((files, ctx) => {
    const paths = Object.keys(files);
    if (paths.length > LIMITS.projectFiles)
      ctx.addIssue({ code: 'custom', message: `at most ${LIMITS.projectFiles} files (rule too_many_files)` });
    for (const path of paths) {
      const problem = pathProblem(path);
      if (problem)
        ctx.addIssue({ code: 'custom', path: [path], message: `${problem.message} (rule ${problem.rule})` });
    }
  }),
  /** The app's environment (e.g. DATABASE_URL); the daemon checks the same rules again. */
  env: AppEnv.optional(),
});
export type ClaimBody = z.output<typeof ClaimBody>;

/** What a claim answers. `upstream` is where the router's preview proxy forwards. */
export interface ClaimResult {
  previewId: string;
  nodeId: string;
  containerId: string;
  upstream: string;
  warm: boolean;
  /**
   * `ready`: the dev server answers. `installing`: the daemon installs the project's dependencies
   * (minutes at worst); the claim returned without waiting, and status follows the install.
   */
  phase: 'ready' | 'installing';
  /** Claim to `phase`, ms. */
  ms: number;
}
