import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PreviewError } from '@preview/tiers';
import type { Hono } from 'hono';
import type { Logger } from 'pino';
import type { AuthEnv } from './auth/middleware.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The mode every editor build is made in. Part of the cache key, so a build made in another mode
 * (as this module made them before the build ran in its own process) is never served.
 */
const BUILD_MODE = 'production';

/** The editor page's sources (the `editor/` workspace). */
export const EDITOR_ROOT = join(REPO, 'editor');

/**
 * What the editor bundle is made of: its own sources and the workspace code it imports. A change in
 * any of them (or in Vite's version) gives another hash, hence a rebuild.
 */
const SOURCE_DIRS = ['editor/src', 'browser-runtime/src', 'tiers/src'];
const SOURCE_FILES = ['editor/index.html', 'editor/vite.config.ts', 'editor/package.json'];

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory() && e.name !== 'node_modules') out.push(...(await listFiles(p)));
    else if (e.isFile() && !/\.test\.tsx?$/.test(e.name)) out.push(p);
  }
  return out;
}

/**
 * A hex SHA-256 over the editor's sources (paths and contents, tests excluded) and Vite's version:
 * the name of the built assets' directory.
 */
export async function editorSourceHash(repo = REPO): Promise<string> {
  const h = createHash('sha256');
  const files = [
    ...SOURCE_FILES.map((f) => join(repo, f)),
    ...(await Promise.all(SOURCE_DIRS.map((d) => listFiles(join(repo, d))))).flat(),
  ].sort();
  for (const f of files) {
    h.update(`${relative(repo, f)}\0`);
    h.update(await readFile(f).catch(() => Buffer.alloc(0)));
    h.update('\0');
  }
  const vite = JSON.parse(await readFile(join(repo, 'node_modules/vite/package.json'), 'utf8')) as {
    version: string;
  };
  h.update(`vite@${vite.version}\0mode=${BUILD_MODE}`);
  return h.digest('hex');
}

/** Where the built editor lives and how it was obtained. */
export interface EditorBuild {
  /** The directory holding `index.html` and `assets/`. */
  dir: string;
  hash: string;
  /** `false` when an earlier build with the same hash was reused. */
  built: boolean;
}

/**
 * Makes sure the editor page is built for the current sources: reuses `<cacheDir>/<hash>` when it
 * holds an `index.html`, else runs Vite's build in production mode, in a process of its own
 * (offline: everything comes from node_modules; see `viteBuild`) into a temporary directory and renames it into place, so concurrent builders never see half a
 * build. Progress goes to `log` (one line before, one after with the time taken).
 * @param o.cacheDir the cache, e.g. `<DATA_DIR>/editor`
 * @throws PreviewError `editor_build_failed` with Vite's error as the cause
 */
export async function ensureEditorBuild(o: { cacheDir: string; log?: Logger }): Promise<EditorBuild> {
  const hash = await editorSourceHash();
  const dir = resolve(o.cacheDir, hash.slice(0, 16));
  if (existsSync(join(dir, 'index.html'))) return { dir, hash, built: false };
  const t0 = performance.now();
  o.log?.info({ dir }, 'building the editor page (first start, or its sources changed)…');
  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
  await mkdir(o.cacheDir, { recursive: true });
  try {
    await viteBuild(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw new PreviewError(
      'editor_build_failed',
      `building the editor page failed: ${(e as Error).message}`,
      {
        cause: e,
      },
    );
  }
  try {
    await rename(tmp, dir);
  } catch (e) {
    // Another builder got there first: its build is the same sources.
    await rm(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, 'index.html'))) throw e;
  }
  o.log?.info({ dir, ms: Math.round(performance.now() - t0) }, 'editor page built');
  return { dir, hash, built: true };
}

/**
 * Vite's `build` of the editor into `outDir`, in a process of its own whose `NODE_ENV` is
 * `production`. Vite and @vitejs/plugin-react choose the build's mode from `process.env.NODE_ENV`
 * (React's development build and `jsxDEV` for anything but `production`), and a process that ran a
 * Vite dev server (which sets it to `development`) or vitest (`test`) before would otherwise build a
 * development bundle: several times the CPU per keystroke in the editor page. The same command as
 * the router image's build (docker/router/Dockerfile). Rejects with Vite's output on failure.
 */
function viteBuild(outDir: string): Promise<void> {
  const cli = join(REPO, 'node_modules/vite/bin/vite.js');
  const args = [cli, 'build', EDITOR_ROOT, '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      args,
      { cwd: REPO, env: { ...process.env, NODE_ENV: BUILD_MODE }, maxBuffer: 16 * 1024 * 1024 },
      (err, _stdout, stderr) => {
        if (!err) return resolve();
        const output = String(stderr).trim().split('\n').slice(-20).join('\n');
        reject(new Error(output || err.message, { cause: err }));
      },
    );
  });
}

/**
 * The bundler runtime's files (worker, service worker, host page, esbuild.wasm, vendor React) built
 * from this repository's `browser-runtime` (its `buildBundlerAssets`), for a router run from the
 * repo (`npm start`) without `BUNDLER_ASSETS_DIR`. The module is loaded by path at run time, so the
 * router's image bundle does not carry it (the image sets `BUNDLER_ASSETS_DIR`).
 * @throws the build's error (esbuild's), on the first request to the runtime host
 */
export async function bundlerAssetsFromRepo(log?: Logger): Promise<Map<string, string | Uint8Array>> {
  const t0 = performance.now();
  const mod = (await import(join(REPO, 'browser-runtime/src/runtimes/bundler/assets.ts'))) as {
    buildBundlerAssets(): Promise<{ files: Map<string, string | Uint8Array> }>;
  };
  const { files } = await mod.buildBundlerAssets();
  log?.info({ files: files.size, ms: Math.round(performance.now() - t0) }, 'bundler runtime built');
  return files;
}

/**
 * The editor build the router serves, from its configuration: `EDITOR_DIR` as it is (checked on the
 * first request: it must hold `index.html`), else `ensureEditorBuild` into `<DATA_DIR>/editor`.
 */
export function editorFromConfig(
  config: { EDITOR_DIR?: string | undefined; DATA_DIR: string },
  log?: Logger,
): () => Promise<EditorBuild> {
  const fixed = config.EDITOR_DIR;
  if (fixed === undefined)
    return once(() =>
      ensureEditorBuild({ cacheDir: join(config.DATA_DIR, 'editor'), ...(log ? { log } : {}) }),
    );
  return once(async () => {
    const dir = resolve(fixed);
    if (!existsSync(join(dir, 'index.html')))
      throw new PreviewError(
        'invalid_config',
        `EDITOR_DIR: ${dir} has no index.html (build the editor into it)`,
      );
    return { dir, hash: 'prebuilt', built: false };
  });
}

/**
 * `make`, run at most once at a time: callers share the pending or settled promise; a rejection is
 * dropped so that the next call tries again (a failed build is retried on the next request).
 */
export function once<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    p ??= make().catch((e: unknown) => {
      p = undefined;
      throw e;
    });
    return p;
  };
}

/**
 * Cross-origin isolation for the editor page: WebContainers need `SharedArrayBuffer`, which needs
 * `crossOriginIsolated` (COOP `same-origin` + COEP). The preview iframe lives on another origin
 * (`<id>.<PREVIEW_DOMAIN>`): under either COEP value it loads only when its answer carries COEP and
 * `Cross-Origin-Resource-Policy: cross-origin`, which the preview proxy adds (`EMBEDDABLE_HEADERS`).
 * `credentialless` rather than `require-corp` so that cross-origin images or scripts the editor page
 * may show later need no CORP header.
 */
export const ISOLATION_HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'credentialless',
} as const;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.wasm': 'application/wasm',
  '.woff2': 'font/woff2',
  '.png': 'image/png',
};

/**
 * Serves the built editor: `GET /` is `index.html` (`no-cache`: it names the current assets),
 * `GET /assets/*` are Vite's content-hashed files (`immutable`, a year). Both carry
 * `ISOLATION_HEADERS`. `build` is called on each request (wrap it in `once`).
 */
export function registerEditorRoutes(app: Hono<AuthEnv>, build: () => Promise<EditorBuild>): void {
  app.get('/', async () => {
    const { dir } = await build();
    return new Response(await readFile(join(dir, 'index.html')), {
      headers: { 'content-type': TYPES['.html']!, 'cache-control': 'no-cache', ...ISOLATION_HEADERS },
    });
  });
  app.get('/assets/*', async (c) => {
    const { dir } = await build();
    const root = join(dir, 'assets');
    const file = resolve(root, `.${decodeURIComponent(c.req.path.slice('/assets'.length))}`);
    if (!file.startsWith(root + sep) || !(await stat(file).catch(() => undefined))?.isFile())
      return c.json({ error: { code: 'not_found', message: `no editor asset ${c.req.path}` } }, 404);
    return new Response(await readFile(file), {
      headers: {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'cache-control': 'public, max-age=31536000, immutable',
        ...ISOLATION_HEADERS,
      },
    });
  });
}
