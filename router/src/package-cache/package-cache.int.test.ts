/**
 * Issue 13, "package cache in the router": bare imports of the bundler runtime resolve through the
 * router, which fetches tarballs from the configured npm registry (here a registry this test serves on
 * loopback from packages it packs itself), bundles each entry as browser ESM with esbuild and serves
 * it immutable. Real router, real Postgres.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createBrowserTier } from '@preview/tiers';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness } from '../../test/harness.ts';
import { createLocalServerTier } from '../../test/local-tier.ts';

type Pkg = { name: string; version: string; files: Record<string, string>; json?: Record<string, unknown> };

const PACKAGES: Pkg[] = [
  { name: 'tiny-dep', version: '1.0.0', files: { 'index.js': 'export const greet = (n) => "old " + n;' } },
  { name: 'tiny-dep', version: '1.2.0', files: { 'index.js': 'export const greet = (n) => "hi " + n;' } },
  { name: 'tiny-dep', version: '2.0.0', files: { 'index.js': 'export const greet = (n) => "v2 " + n;' } },
  {
    name: 'uses-dep',
    version: '2.0.0',
    json: { dependencies: { 'tiny-dep': '^1.0.0' }, peerDependencies: { 'peer-lib': '*' } },
    files: {
      'index.js':
        "import { greet } from 'tiny-dep';\nimport peer from 'peer-lib';\nimport { local } from './local.js';\nexport const hello = () => greet(local) + peer;\n",
      'local.js': "export const local = 'local-value';\n",
    },
  },
  {
    name: 'cjs-lib',
    version: '1.0.0',
    json: { main: 'index.js', exports: { '.': './index.js', './extra': './extra.js' } },
    files: {
      'index.js':
        "if (process.env.NODE_ENV === 'production') module.exports = require('./lib.js');\nelse module.exports = require('./lib.js');\n",
      'lib.js': 'exports.add = (a, b) => a + b;\nexports.mul = (a, b) => a * b;\n',
      'extra.js': "module.exports = { extra: 'extra!' };\n",
    },
  },
  {
    name: 'cjs-requires',
    version: '1.0.0',
    json: { main: 'index.js', dependencies: { 'cjs-lib': '^1.0.0' }, peerDependencies: { 'peer-lib': '*' } },
    files: {
      'index.js':
        "var lib = require('cjs-lib');\nvar peer = require('peer-lib');\nexports.sum = function (a, b) { return lib.add(a, b); };\nexports.peer = peer;\n",
    },
  },
  {
    name: 'esm-reexport',
    version: '1.0.0',
    json: { type: 'module', main: 'index.js', dependencies: { 'tiny-dep': '^1.0.0' } },
    files: { 'index.js': "export * from 'tiny-dep';\nexport const own = 'own';\n" },
  },
  {
    name: '@scope/pkg',
    version: '1.0.0',
    files: { 'index.js': 'export default 1;', 'sub.js': 'export const sub = "s";' },
  },
  {
    name: 'native-addon',
    version: '1.0.0',
    json: { gypfile: true },
    files: { 'index.js': "module.exports = require('./build/Release/addon.node');", 'binding.gyp': '{}' },
  },
  {
    // Two public entries sharing module state, as `svelte` and `svelte/internal/client` do (one
    // through the package's own `imports` field, `#state`, as svelte's `#client`).
    name: 'shared-state',
    version: '1.0.0',
    json: {
      type: 'module',
      exports: { '.': './index.js', './internal': './internal/index.js' },
      imports: { '#state': './state.js' },
    },
    files: {
      'state.js': 'export const state = { count: 0 };\n',
      'index.js': "import { state } from './state.js';\nexport const bump = () => ++state.count;\n",
      'internal/index.js': "import { state } from '#state';\nexport const read = () => state.count;\n",
    },
  },
  {
    name: 'uses-fs',
    version: '1.0.0',
    files: { 'index.js': "import { readFileSync } from 'fs';\nexport const r = readFileSync;" },
  },
];

/** A loopback npm registry: packuments (abbreviated) and tarballs packed from PACKAGES. */
async function startRegistry(dir: string) {
  const tarballs = new Map<string, Buffer>();
  const hits = new Map<string, number>();
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const packuments: Record<
    string,
    { name: string; 'dist-tags': Record<string, string>; versions: Record<string, unknown> }
  > = {};
  for (const p of PACKAGES) {
    const root = join(dir, `${p.name.replace('/', '+')}-${p.version}`, 'package');
    for (const [f, text] of Object.entries({
      ...p.files,
      'package.json': JSON.stringify({ name: p.name, version: p.version, ...p.json }),
    })) {
      await mkdir(dirname(join(root, f)), { recursive: true });
      await writeFile(join(root, f), text);
    }
    const file = `${root}.tgz`;
    await tar.c({ gzip: true, cwd: dirname(root), file }, ['package']);
    const bytes = await import('node:fs/promises').then((fs) => fs.readFile(file));
    const key = `/tarballs/${p.name.replace('/', '+')}-${p.version}.tgz`;
    tarballs.set(key, bytes);
    const doc = packuments[p.name] ?? { name: p.name, 'dist-tags': {}, versions: {} };
    packuments[p.name] = doc;
    doc['dist-tags'].latest = p.version;
    doc.versions[p.version] = {
      name: p.name,
      version: p.version,
      ...p.json,
      dist: {
        tarball: `${base}${key}`,
        integrity: `sha512-${createHash('sha512').update(bytes).digest('base64')}`,
      },
    };
  }
  server.on('request', (req, res) => {
    const url = decodeURIComponent(req.url ?? '/');
    hits.set(url, (hits.get(url) ?? 0) + 1);
    const t = tarballs.get(url);
    if (t) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(t);
      return;
    }
    const doc = packuments[url.slice(1)];
    if (doc) res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    else res.writeHead(404).end('{}');
  });
  return { base, hits, close: () => new Promise((r) => server.close(r)) };
}

let h: Harness;
let registry: Awaited<ReturnType<typeof startRegistry>>;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pkg-cache-test-'));
  registry = await startRegistry(join(dir, 'registry'));
  h = await createHarness({
    env: { NPM_REGISTRY_URL: `${registry.base}/`, PACKAGE_CACHE_DIR: join(dir, 'cache') },
    tiers: ({ browserPlacements }) => ({
      browser: createBrowserTier({ placements: browserPlacements }),
      docker: createLocalServerTier({ autoReady: true }),
    }),
  });
});
afterAll(async () => {
  await h?.close();
  await registry?.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (path: string) => h.router.app.request(path, { redirect: 'manual' });

/** Imports a bundle in Node from a data: URL (its own imports must be resolvable there: none here). */
const load = async (code: string) =>
  (await import(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`)) as Record<
    string,
    unknown
  >;

describe('package cache through the router', () => {
  it('a range redirects to the exact version its range allows; the exact URL is immutable ESM', async () => {
    const r = await get('/__pkg/tiny-dep@^1.0.0');
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toBe('/__pkg/tiny-dep@1.2.0');
    const m = await get('/__pkg/tiny-dep@1.2.0');
    expect(m.status).toBe(200);
    expect(m.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(m.headers.get('content-type')).toMatch(/^text\/javascript/);
    const mod = await load(await m.text());
    expect((mod.greet as (n: string) => string)('x')).toBe('hi x');
  });

  it('bundles only the package itself: a dependency by its exact URL, a peer bare (the import map’s)', async () => {
    const code = await (await get('/__pkg/uses-dep@2.0.0')).text();
    expect(code).toContain('"/__pkg/tiny-dep@1.2.0"');
    expect(code).toMatch(/from\s*"peer-lib"/);
    expect(code).toContain('local-value');
    expect(code).not.toContain('"hi "');
  });

  it('CommonJS gets its named exports (following re-exports) and subpaths from exports', async () => {
    const mod = await load(await (await get('/__pkg/cjs-lib@1.0.0')).text());
    expect((mod.add as (a: number, b: number) => number)(2, 3)).toBe(5);
    expect((mod.mul as (a: number, b: number) => number)(2, 3)).toBe(6);
    expect((mod.default as { add: unknown }).add).toBe(mod.add);
    const extra = await load(await (await get('/__pkg/cjs-lib@1.0.0/extra')).text());
    expect(extra.extra).toBe('extra!');
    const scoped = await load(await (await get('/__pkg/@scope/pkg@1.0.0/sub')).text());
    expect(scoped.sub).toBe('s');
  });

  it('a CommonJS require() of another package becomes a static import of its bundle (ESM cannot require)', async () => {
    const code = await (await get('/__pkg/cjs-requires@1.0.0')).text();
    // esbuild's dynamic require shim throws in a browser: `__require("cjs-lib")` must not be there.
    expect(code).not.toMatch(/__require\(\s*"/);
    expect(code).toMatch(/from\s*"\/__pkg\/cjs-lib@1\.0\.0"/);
    expect(code).toMatch(/from\s*"peer-lib"/);
    // What the page's import map would do: each import reaches that package's bundle.
    const dataUrl = (js: string) => `data:text/javascript;base64,${Buffer.from(js).toString('base64')}`;
    const lib = await (await get('/__pkg/cjs-lib@1.0.0')).text();
    const linked = code
      .replace('"/__pkg/cjs-lib@1.0.0"', JSON.stringify(dataUrl(lib)))
      .replace('"peer-lib"', JSON.stringify(dataUrl('export default { isPeer: true };')));
    const mod = await load(linked);
    expect((mod.sum as (a: number, b: number) => number)(2, 3)).toBe(5);
    expect(mod.peer).toEqual({ isPeer: true });
  });

  it("an ES module's `export * from '<dependency>'` stays a static re-export (no default made up)", async () => {
    const code = await (await get('/__pkg/esm-reexport@1.0.0')).text();
    expect(code).toMatch(/export \*\s*from\s*"\/__pkg\/tiny-dep@1\.2\.0"/);
    expect(code).not.toMatch(/as default/);
    const dataUrl = (js: string) => `data:text/javascript;base64,${Buffer.from(js).toString('base64')}`;
    const dep = await (await get('/__pkg/tiny-dep@1.2.0')).text();
    const mod = await load(code.replaceAll('"/__pkg/tiny-dep@1.2.0"', JSON.stringify(dataUrl(dep))));
    expect(mod.own).toBe('own');
    expect((mod.greet as (n: string) => string)('x')).toBe('hi x');
  });

  it('the same request twice (and at once) fetches the tarball once', async () => {
    const before = registry.hits.get('/tarballs/@scope+pkg-1.0.0.tgz') ?? 0;
    const [a, b] = await Promise.all([get('/__pkg/@scope/pkg@1.0.0'), get('/__pkg/@scope/pkg@1.0.0')]);
    const c = await get('/__pkg/@scope/pkg@1.0.0');
    expect([a.status, b.status, c.status]).toEqual([200, 200, 200]);
    expect(await a.text()).toBe(await c.text());
    expect(registry.hits.get('/tarballs/@scope+pkg-1.0.0.tgz')).toBe(Math.max(before, 1));
  });

  it('replicas share bundles through Postgres: a module one replica built is not fetched again by another', async () => {
    const tarball = '/tarballs/uses-dep-2.0.0.tgz';
    const first = await (await get('/__pkg/uses-dep@2.0.0')).text();
    const fetched = registry.hits.get(tarball) ?? 0;
    expect(fetched).toBeGreaterThanOrEqual(1);
    // A replica with a disk of its own (another machine): it reads the first replica's bundle.
    const other = await h.replica({ PACKAGE_CACHE_DIR: join(dir, 'cache-replica') });
    const r = await other.app.request('/__pkg/uses-dep@2.0.0');
    expect(r.status).toBe(200);
    expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(await r.text()).toBe(first);
    expect(registry.hits.get(tarball)).toBe(fetched);
    // Without sharing, a replica on its own disk fetches and bundles again: the store above is what saved it.
    const alone = await h.replica({
      PACKAGE_CACHE_DIR: join(dir, 'cache-alone'),
      PACKAGE_CACHE_SHARED: 'off',
    });
    expect(await (await alone.app.request('/__pkg/uses-dep@2.0.0')).text()).toBe(first);
    expect(registry.hits.get(tarball)).toBe(fetched + 1);
  });

  it('a package that cannot run in a browser fails naming it', async () => {
    const native = await get('/__pkg/native-addon@1.0.0');
    expect(native.status).toBe(422);
    expect(await native.json()).toMatchObject({
      error: { code: 'browser_incompatible', pkg: 'native-addon@1.0.0' },
    });
    const fs = await get('/__pkg/uses-fs@1.0.0');
    expect(fs.status).toBe(422);
    expect(((await fs.json()) as { error: { message: string } }).error.message).toMatch(
      /uses-fs@1\.0\.0.*"fs"/,
    );
    expect((await get('/__pkg/no-such-pkg@1.0.0')).status).toBe(404);
    expect((await get('/__pkg/tiny-dep@^9')).status).toBe(404);
    expect((await get('/__pkg/tiny-dep')).status).toBe(400);
    expect((await get('/__pkg/tiny-dep@1.2.0/a%20b')).status).toBe(400);
  });

  it('entries of one package share its modules: one chunk, one copy of its state per page', async () => {
    const main = await (await get('/__pkg/shared-state@1.0.0')).text();
    const internal = await (await get('/__pkg/shared-state@1.0.0/internal')).text();
    const chunk = /"(\/__pkg\/shared-state@1\.0\.0\/__chunks\/chunk-[A-Za-z0-9]+)"/.exec(main)?.[1];
    expect(chunk, main).toBeDefined();
    expect(internal).toContain(`"${chunk}"`);
    expect(main).not.toContain('count: 0');
    const shared = await get(chunk as string);
    expect(shared.status).toBe(200);
    expect(shared.headers.get('cache-control')).toContain('immutable');
    // What a page does: both entries import the one chunk by its URL.
    const chunkUrl = `data:text/javascript;base64,${Buffer.from(await shared.text()).toString('base64')}`;
    const a = await load(main.replace(chunk as string, chunkUrl));
    const b = await load(internal.replace(chunk as string, chunkUrl));
    (a.bump as () => number)();
    expect((b.read as () => number)()).toBe(1);
  });

  it('the import map of a preview; a browser-incompatible dependency moves it to docker with that reason', async () => {
    const create = async (
      dependencies: Record<string, string>,
      devDependencies: Record<string, string> = {},
    ) => {
      const res = await h.router.app.request('/v1/previews', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
        body: JSON.stringify({
          files: {
            'index.html': '<div id="app"></div><script type="module" src="/src/main.js"></script>',
            'src/main.js': "import { greet } from 'tiny-dep'; document.body.append(greet('x'));",
            'src/extra.js': Object.keys(devDependencies)
              .map((d) => `import ${JSON.stringify(d)};\n`)
              .join(''),
            'package.json': JSON.stringify({
              name: 'app',
              dependencies,
              devDependencies: { vite: '^8', ...devDependencies },
            }),
          },
          client: { bundler: true },
        }),
      });
      const body = (await res.json()) as { id: string; tier: string };
      expect(body.tier, JSON.stringify(body)).toBe('browser');
      return body.id;
    };
    const ok = await create({ 'tiny-dep': '^1.0.0', 'cjs-lib': '1' });
    const map = await h.router.app.request(`/v1/previews/${ok}/importmap`, { headers: bearer(h.alice.jwt) });
    expect(map.status).toBe(200);
    expect(await map.json()).toEqual({
      imports: {
        'tiny-dep': '/__pkg/tiny-dep@1.2.0',
        'tiny-dep/': '/__pkg/tiny-dep@1.2.0/',
        'cjs-lib': '/__pkg/cjs-lib@1.0.0',
        'cjs-lib/': '/__pkg/cjs-lib@1.0.0/',
      },
    });

    // A devDependency the code imports is mapped (create-vite's Svelte template lists svelte there); vite is not.
    const dev = await create({ 'tiny-dep': '^1.0.0' }, { '@scope/pkg': '^1.0.0' });
    const devMap = await h.router.app.request(`/v1/previews/${dev}/importmap`, {
      headers: bearer(h.alice.jwt),
    });
    expect(((await devMap.json()) as { imports: Record<string, string> }).imports).toEqual({
      'tiny-dep': '/__pkg/tiny-dep@1.2.0',
      'tiny-dep/': '/__pkg/tiny-dep@1.2.0/',
      '@scope/pkg': '/__pkg/@scope/pkg@1.0.0',
      '@scope/pkg/': '/__pkg/@scope/pkg@1.0.0/',
    });

    const bad = await create({ 'tiny-dep': '^1.0.0', 'native-addon': '^1.0.0' });
    const res = await h.router.app.request(`/v1/previews/${bad}/importmap`, { headers: bearer(h.alice.jwt) });
    expect(res.status).toBe(409);
    const body = (await res.json()) as {
      error: {
        code: string;
        pkg: string;
        preview: { id: string; tier: string; reasons: Array<{ reason: string }> };
      };
    };
    expect(body.error).toMatchObject({ code: 'browser_incompatible', pkg: 'native-addon@1.0.0' });
    expect(body.error.preview).toMatchObject({ id: bad, tier: 'docker' });
    expect(body.error.preview.reasons.map((r) => r.reason)).toContain(
      'moved to docker: package native-addon@1.0.0 cannot run in a browser',
    );
  });
});
