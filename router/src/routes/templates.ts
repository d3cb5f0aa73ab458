import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { type ProjectFiles, TemplateName } from '@preview/tiers';
import { type AuthEnv, requireUser } from '../auth/middleware.ts';
import { createRouteGroup, errorResponses as errors, secured } from './route-group.ts';

/** Files a template's starter project leaves out: installs and lockfiles (sandboxes have the deps). */
const SKIP = new Set(['node_modules', 'package-lock.json', 'dist', '.next', '.expo']);
/** Largest starter file sent, bytes: templates are small apps; anything bigger is not a source. */
const MAX_FILE_BYTES = 256 * 1024;

/** One template as the editor's picker shows it. */
export interface TemplateEntry {
  /** A `TemplateName` (tiers/src/wire.ts): what `POST /v1/previews` takes as `template`. */
  name: string;
  /** The starter project: its sources, UTF-8 (no lockfile, no node_modules). */
  files: ProjectFiles;
}

async function readTree(root: string, dir = root): Promise<ProjectFiles> {
  const out: ProjectFiles = {};
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (SKIP.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) Object.assign(out, await readTree(root, p));
    else if (e.isFile()) {
      const bytes = await readFile(p);
      if (bytes.length <= MAX_FILE_BYTES)
        out[relative(root, p).split('\\').join('/')] = bytes.toString('utf8');
    }
  }
  return out;
}

/**
 * Every template the router knows (`TemplateName`) that has sources under `dir` (the repo's
 * `templates/`), in `TemplateName` order, with its starter files. A template without a folder is
 * left out.
 */
export async function loadTemplates(dir: string): Promise<TemplateEntry[]> {
  const out: TemplateEntry[] = [];
  for (const name of TemplateName.options) {
    const files = await readTree(join(dir, name)).catch(() => undefined);
    if (files && Object.keys(files).length) out.push({ name, files });
  }
  return out;
}

const TemplateList = z
  .object({
    templates: z.array(
      z.object({
        name: z.string(),
        files: z.record(
          z.string(),
          z.union([z.string(), z.object({ content: z.string(), encoding: z.string() })]),
        ),
      }),
    ),
  })
  .openapi('TemplateList');

/**
 * `GET /v1/templates`: the templates with their starter files (the editor's template picker). Any
 * signed-in user; read once from `dir` and kept (the sources ship with the router).
 */
export function templateRoutes({ dir }: { dir: string }): OpenAPIHono<AuthEnv> {
  const app = createRouteGroup();
  let loaded: Promise<TemplateEntry[]> | undefined;
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/templates',
      summary: 'List the templates with their starter files',
      security: secured,
      responses: {
        200: { description: 'Templates', content: { 'application/json': { schema: TemplateList } } },
        ...errors,
      },
    }),
    async (c) => {
      requireUser(c);
      loaded ??= loadTemplates(dir).catch((e: unknown) => {
        loaded = undefined;
        throw e;
      });
      return c.json({ templates: await loaded }, 200);
    },
  );
  return app;
}
