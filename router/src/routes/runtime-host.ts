import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { cors } from 'hono/cors';
import type { AuthEnv } from '../auth/middleware.ts';

/** The files of the bundler runtime (`buildBundlerAssets().files` of `@preview/browser-runtime/assets`). */
export type RuntimeAssets = Map<string, string | Uint8Array>;

export interface RuntimeHostOptions {
  /**
   * Host name (no port) the runtime is served on: a preview origin, not the editor's, so the bundled
   * app cannot reach the editor's storage. E.g. `bundler.preview.localhost`.
   */
  host: string;
  /** The runtime origin's base URL as browsers reach it, e.g. `https://bundler.preview.example.com/`. */
  url: () => string;
  /** Loads the assets once, on the first request. */
  assets: () => Promise<RuntimeAssets>;
}

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  json: 'application/json',
  wasm: 'application/wasm',
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/**
 * Reads a folder of runtime assets (as written from `buildBundlerAssets()`) into memory: relative
 * path → bytes.
 * @throws the fs error when `dir` cannot be read
 */
export async function loadRuntimeAssetsDir(dir: string): Promise<RuntimeAssets> {
  const out: RuntimeAssets = new Map();
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath, e.name);
    out.set(relative(dir, full).split('\\').join('/'), await readFile(full));
  }
  return out;
}

/**
 * Serves the bundler runtime (worker, service worker at the root, `esbuild.wasm`, vendor files) on
 * its own host. Requests for that host are answered here: an asset, or `/__pkg/*` (the package
 * cache, passed on), or 404 — never the API or the editor. Headers: the service worker is
 * `no-cache` with `service-worker-allowed: /`; every asset carries
 * `cross-origin-resource-policy: cross-origin` and `cross-origin-embedder-policy: require-corp` so a
 * cross-origin-isolated editor page may frame and load it.
 *
 * The page that runs the runtime on that origin calls the API on the router's own origin (the
 * preview's import map, its stored files, the sync socket, the same-id fallback): `/v1/*` answers
 * CORS (`hono/cors`) for origins whose host name is exactly `o.host` (any scheme and port), with the
 * bearer token in `authorization` and no cookies. Every other origin gets no CORS headers.
 *
 * `GET /v1/runtime-host` (public) answers `{ url }`: where an editor page frames the runtime's
 * `host.html` (RemoteBundlerRuntime), so the bundled app runs on this origin, not the editor's.
 */
export function registerRuntimeHost(app: OpenAPIHono<AuthEnv>, o: RuntimeHostOptions): void {
  const host = o.host.toLowerCase();
  const runtimeOrigin = (origin: string): string | null => {
    try {
      return new URL(origin).hostname.toLowerCase() === host ? origin : null;
    } catch {
      return null;
    }
  };
  app.use(
    '/v1/*',
    cors({
      origin: (origin) => runtimeOrigin(origin),
      allowMethods: ['GET', 'POST', 'PUT', 'DELETE'],
      allowHeaders: ['authorization', 'content-type', 'idempotency-key'],
      maxAge: 600,
    }),
  );
  app.get('/v1/runtime-host', (c) => c.json({ url: o.url() }, 200, { 'cache-control': 'no-cache' }));
  let loaded: Promise<RuntimeAssets> | undefined;
  app.use('*', async (c, next) => {
    const name = (c.req.header('host') ?? '').toLowerCase().replace(/:\d+$/, '');
    if (name !== host) return await next();
    const path = c.req.path;
    if (path.startsWith('/__pkg/')) return await next();
    loaded ??= o.assets().catch((e: unknown) => {
      loaded = undefined;
      throw e;
    });
    const assets = await loaded;
    const key = path === '/' ? 'index.html' : path.slice(1);
    const body = assets.get(key);
    const common = {
      'cross-origin-resource-policy': 'cross-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'x-content-type-options': 'nosniff',
    };
    if (body === undefined) return c.text('not found', 404, common);
    const type = TYPES[key.split('.').pop() ?? ''] ?? 'application/octet-stream';
    const sw = key === 'preview-sw.js';
    return c.body(typeof body === 'string' ? body : new Uint8Array(body), 200, {
      ...common,
      'content-type': type,
      'cache-control': sw ? 'no-cache' : 'public, max-age=300',
      ...(sw ? { 'service-worker-allowed': '/' } : {}),
    });
  });
}
