import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { InvalidInputError, NotFoundError, type PreviewError } from '@preview/tiers';
import semver from 'semver';
import { type AuthEnv, requireUser } from '../auth/middleware.ts';
import { BrowserIncompatibleError, type PackageCache, splitSpecifier } from '../package-cache/cache.ts';
import { importedPackages } from '../package-cache/imported.ts';
import type { PreviewService } from '../previews.ts';
import { ErrorBody, IdParams } from '../schemas.ts';
import type { Session } from '../store/sessions.ts';

/** Headers of a stored bundle: one URL per exact version, so it never changes. */
const IMMUTABLE = {
  'content-type': 'text/javascript; charset=utf-8',
  'cache-control': 'public, max-age=31536000, immutable',
  // Loaded by bundled apps on the preview origin, and by cross-origin-isolated pages.
  'access-control-allow-origin': '*',
  'cross-origin-resource-policy': 'cross-origin',
};

/** `name@version[/subpath]` (name may be scoped) → its parts. @throws InvalidInputError */
export function parsePackagePath(path: string): { name: string; version: string; subpath: string } {
  const scoped = path.startsWith('@');
  const at = path.indexOf('@', scoped ? 1 : 0);
  if (at <= 0)
    throw new InvalidInputError(
      'invalid_package',
      `path: ${JSON.stringify(path)} is not name@version[/subpath]`,
    );
  const name = path.slice(0, at);
  const rest = path.slice(at + 1);
  const slash = rest.indexOf('/');
  const version = decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash));
  const subpath = slash < 0 ? '' : rest.slice(slash + 1);
  splitSpecifier(subpath ? `${name}/${subpath}` : name);
  if (!version)
    throw new InvalidInputError('invalid_package', `path: ${JSON.stringify(path)} has no version`);
  return { name, version, subpath };
}

const errorJson = (e: PreviewError, extra: Record<string, unknown> = {}) => ({
  error: { code: e.code, message: e.message, ...extra },
});

/**
 * The bundler runtime's package routes:
 *
 * - `GET /__pkg/<name>@<version>[/<subpath>]` (no credentials: public npm code): the bundled browser
 *   ESM of that module, `cache-control: immutable`. A range or dist-tag instead of an exact version
 *   answers `302` to the exact URL. `422 browser_incompatible` names a package that cannot run in a
 *   browser; `404` an unknown package, version or subpath; `400` a malformed path.
 * - `GET /v1/previews/:id/importmap` (owner): the import map of the preview's `package.json`
 *   dependencies (exact versions). Each dependency's main entry is built first: one that cannot run
 *   in a browser moves the preview to the docker tier under the same id, with that reason, and
 *   answers `409 browser_incompatible` with the moved preview (`preview`).
 */
export function registerPackageRoutes(
  app: OpenAPIHono<AuthEnv>,
  deps: {
    cache: PackageCache;
    previews: PreviewService;
    view: (s: Session) => Promise<unknown>;
  },
): void {
  const { cache, previews } = deps;
  /** `name@version` main entries already built and found browser-ready (versions never change). */
  const ready = new Set<string>();
  app.get('/__pkg/*', async (c) => {
    const path = c.req.path.slice('/__pkg/'.length);
    try {
      const p = parsePackagePath(path);
      if (!semver.valid(p.version)) {
        const v = await cache.resolve(p.name, p.version);
        return c.redirect(cache.url(p.name, v, p.subpath), 302);
      }
      const m = await cache.module(p.name, p.version, p.subpath);
      return c.body(m.code, 200, IMMUTABLE);
    } catch (e) {
      if (e instanceof BrowserIncompatibleError) return c.json(errorJson(e, { pkg: e.pkg }), 422);
      if (e instanceof NotFoundError) return c.json(errorJson(e), 404);
      if (e instanceof InvalidInputError) return c.json(errorJson(e), 400);
      throw e;
    }
  });

  const ImportMap = z.object({ imports: z.record(z.string(), z.string()) }).openapi('ImportMap');
  const route = createRoute({
    method: 'get',
    path: '/v1/previews/{id}/importmap',
    summary: "The bundler runtime's import map of the preview's dependencies",
    security: [{ bearer: [] as string[] }],
    request: { params: IdParams },
    responses: {
      200: { description: 'Import map', content: { 'application/json': { schema: ImportMap } } },
      409: {
        description: 'A dependency cannot run in a browser (the preview was moved to docker)',
        content: { 'application/json': { schema: ErrorBody } },
      },
    },
  });
  app.openapi(route, async (c) => {
    const user = requireUser(c);
    const s = await previews.get(user.userId, c.req.valid('param').id);
    const files = await previews.store.loadFiles(s.id);
    const pkgFile = files['package.json'];
    const text =
      typeof pkgFile === 'string'
        ? pkgFile
        : pkgFile
          ? Buffer.from(pkgFile.content, 'base64').toString()
          : '{}';
    let dependencies: Record<string, string>;
    try {
      const pkg = JSON.parse(text) as {
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      dependencies = { ...pkg.dependencies };
      // Vite bundles what the code imports, wherever package.json lists it (create-vite's Svelte
      // template has `svelte` in devDependencies): a devDependency the code imports is in the map.
      const imported = importedPackages(files);
      for (const [name, range] of Object.entries(pkg.devDependencies ?? {}))
        if (!(name in dependencies) && imported.has(name)) dependencies[name] = range;
    } catch {
      throw new InvalidInputError('invalid_package_json', 'package.json: not valid JSON');
    }
    const map = await cache.importMap(dependencies);
    try {
      await Promise.all(
        Object.keys(dependencies).map(async (name) => {
          const url = map.imports[name] as string;
          const version = url.slice(url.lastIndexOf('@') + 1);
          if (ready.has(`${name}@${version}`)) return;
          await cache.module(name, version, '');
          ready.add(`${name}@${version}`);
        }),
      );
    } catch (e) {
      if (!(e instanceof BrowserIncompatibleError)) throw e;
      let moved: unknown;
      if (s.tier === 'browser' && previews.tiers.docker)
        moved = await deps.view(
          await previews.moveToServer(
            user.userId,
            s.id,
            'docker',
            `package ${e.pkg} cannot run in a browser`,
          ),
        );
      return c.json(
        errorJson(e, { pkg: e.pkg, ...(moved ? { preview: moved } : {}) }) as z.infer<typeof ErrorBody>,
        409,
      );
    }
    return c.json(map, 200, { 'cache-control': 'no-store' });
  });
}
