import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidInputError, NotFoundError, TierUnavailableError } from '@preview/tiers';
import { init as initCjsLexer, parse as parseCjs } from 'cjs-module-lexer';
import * as esmLexer from 'es-module-lexer';
import * as esbuild from 'esbuild';
import semver from 'semver';
import * as tar from 'tar';
import type { Packument, RegistryClient } from './registry.ts';
import type { SharedModuleStore } from './shared.ts';

/** One bundled module of a package, as stored and served. */
export interface PackageModule {
  name: string;
  version: string;
  /** Path inside the package (`''` for its main entry, `jsx-runtime`, `dist/locale`). */
  subpath: string;
  /** Browser ESM. */
  code: string;
}

/** A package that cannot run in a browser (a native addon, a Node built-in like `fs`). */
export class BrowserIncompatibleError extends TierUnavailableError {
  readonly pkg: string;
  /** @example new BrowserIncompatibleError('browser_incompatible', 'sharp@0.33.0: native addon', { pkg: 'sharp@0.33.0' }) */
  constructor(code: 'browser_incompatible', message: string, options: { pkg: string; cause?: unknown }) {
    super(code, message, { tier: 'browser', cause: options.cause });
    this.name = 'BrowserIncompatibleError';
    this.pkg = options.pkg;
  }
}

export interface PackageCacheOptions {
  registry: RegistryClient;
  /** Where tarballs are unpacked and bundles stored (`<dir>/pkg/<name>@<version>/…`, `<dir>/out/…`). */
  dir: string;
  /** URL prefix the bundles import each other by. @default '/__pkg/' */
  urlPrefix?: string;
  /** `process.env.NODE_ENV` inside bundles. @default 'development' */
  nodeEnv?: string;
  /** How long a packument is reused before it is asked again, ms. @default 300000 */
  packumentTtlMs?: number;
  /**
   * Bundles shared with the other router replicas (e.g. {@link createPostgresModuleStore}): asked on a
   * disk miss before fetching and bundling, and given each new bundle. @default none (this disk only)
   */
  shared?: SharedModuleStore;
  /** Called when the shared store fails; the request goes on from the registry (or disk). */
  onSharedError?: (err: unknown, op: 'get' | 'put') => void;
}

const NAME_RE = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
const SUBPATH_RE = /^(?:[A-Za-z0-9._@~+-]+\/)*[A-Za-z0-9._@~+-]*$/;
const lexer = initCjsLexer();
const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const IDENT_RE = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const RESERVED = new Set(
  'default break case catch class const continue debugger delete do else enum export extends false finally for function if import in instanceof new null return super switch this throw true try typeof var void while with yield let static implements interface package private protected public await'.split(
    ' ',
  ),
);

/** `react`, `react/jsx-runtime`, `@scope/pkg/sub` → name and subpath. @throws InvalidInputError */
export function splitSpecifier(spec: string): { name: string; subpath: string } {
  const parts = spec.split('/');
  const n = spec.startsWith('@') ? 2 : 1;
  const name = parts.slice(0, n).join('/');
  const subpath = parts.slice(n).join('/');
  if (!NAME_RE.test(name))
    throw new InvalidInputError(
      'invalid_package',
      `package: ${JSON.stringify(name)} is not an npm package name`,
    );
  if (!SUBPATH_RE.test(subpath) || subpath.split('/').some((s) => s === '..' || s === '.'))
    throw new InvalidInputError('invalid_package', `package subpath: ${JSON.stringify(subpath)} (rule path)`);
  return { name, subpath };
}

const enc = (name: string) => name.replace('/', '+');

/**
 * The router's package cache for the bundler runtime: a bare import (`vue`, `react-dom/client`,
 * `@scope/pkg/sub`) becomes browser ESM bundled by esbuild from the package's tarball.
 *
 * - **Versions**: `resolve(name, range)` takes the highest published version satisfying the range
 *   (`semver.maxSatisfying`; a dist-tag such as `latest` works too).
 * - **One shared copy per dependency**: a bundle holds only its own package's files. Its imports of
 *   other packages stay imports: a peer dependency stays bare (`react`, resolved by the page's import
 *   map to the project's copy), a regular dependency becomes `<urlPrefix><dep>@<exact version>/<sub>`
 *   (the highest version its range allows, so packages that agree share one URL).
 * - **CommonJS** entries get their named exports (found by `cjs-module-lexer`, following re-exports),
 *   so `import { useState } from 'react'` works.
 * - **Storage**: unpacked at `<dir>/pkg/<name>@<version>/`, bundles at
 *   `<dir>/out/<name>@<version>/<subpath>.mjs`; the same request twice (or at once) fetches and
 *   bundles once. With `shared`, a bundle another replica made is read from there instead (two
 *   replicas asked for a new module at the same instant may both build it; the first row stays).
 * - **Browser-only**: a native addon (`binding.gyp`, `gypfile`, `*.node`) or an import of a Node
 *   built-in (`fs`, `node:path`, … unless the package's `browser` field maps it away) throws
 *   `BrowserIncompatibleError` (`browser_incompatible`) naming the package.
 */
export function createPackageCache(o: PackageCacheOptions) {
  const prefix = o.urlPrefix ?? '/__pkg/';
  const ttl = o.packumentTtlMs ?? 300_000;
  const nodeEnv = o.nodeEnv ?? 'development';
  const packuments = new Map<string, { at: number; p: Promise<Packument> }>();
  const inflight = new Map<string, Promise<unknown>>();
  const stats = { tarballs: 0, builds: 0, sharedHits: 0 };

  function once<T>(key: string, make: () => Promise<T>): Promise<T> {
    const running = inflight.get(key) as Promise<T> | undefined;
    if (running) return running;
    const p = make().finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  }

  function packument(name: string): Promise<Packument> {
    const hit = packuments.get(name);
    if (hit && Date.now() - hit.at < ttl) return hit.p;
    const p = o.registry.packument(name);
    packuments.set(name, { at: Date.now(), p });
    p.catch(() => packuments.delete(name));
    return p;
  }

  /** The highest published version of `name` that `range` allows. @throws NotFoundError */
  async function resolve(name: string, range: string): Promise<string> {
    splitSpecifier(name);
    const p = await packument(name);
    const tagged = p['dist-tags']?.[range];
    if (tagged && p.versions[tagged]) return tagged;
    const v = semver.maxSatisfying(Object.keys(p.versions), range || '*');
    if (!v)
      throw new NotFoundError(
        'version_not_found',
        `${name}: no published version satisfies ${JSON.stringify(range)}`,
      );
    return v;
  }

  async function unpack(name: string, version: string): Promise<string> {
    const root = join(o.dir, 'pkg', `${enc(name)}@${version}`);
    if (existsSync(join(root, '.complete'))) return root;
    return await once(`unpack:${name}@${version}`, async () => {
      if (existsSync(join(root, '.complete'))) return root;
      const meta = (await packument(name)).versions[version];
      if (!meta) throw new NotFoundError('version_not_found', `${name}@${version} is not published`);
      const bytes = await o.registry.tarball(meta.dist.tarball);
      stats.tarballs++;
      checkIntegrity(name, version, bytes, meta.dist.integrity);
      const tmp = `${root}.tmp-${process.pid}-${Date.now()}`;
      await mkdir(tmp, { recursive: true });
      // Files and folders only: no links out of the package, no absolute or `..` paths (tar's defaults).
      await pipeline(
        Readable.from(bytes),
        tar.x({
          cwd: tmp,
          strip: 1,
          filter: (_p, e) => 'type' in e && (e.type === 'File' || e.type === 'Directory'),
        }),
      );
      await rm(root, { recursive: true, force: true });
      await rename(tmp, root);
      await writeFile(join(root, '.complete'), '');
      return root;
    });
  }

  /**
   * The package's public entries built together (`bundleSharedEntries`), written where `module`
   * reads them (this replica's disk, and the shared store for the others); undefined when the
   * package has fewer than two ES module entries that share anything.
   */
  async function shared_(
    ctx: BundleContext,
    name: string,
    version: string,
    root: string,
  ): Promise<Map<string, string> | undefined> {
    const dir = join(o.dir, 'out', `${enc(name)}@${version}`);
    const built = await bundleSharedEntries(ctx, name, version, root);
    if (!built) return undefined;
    // Chunks first: a replica that finds an entry in the shared store then finds its chunks too.
    const order = [...built].sort(
      ([a], [b]) => Number(b.startsWith('__chunks/')) - Number(a.startsWith('__chunks/')),
    );
    for (const [sub, code] of order) {
      await keep(join(dir, `${sub || 'index'}.mjs`), code);
      await o.shared
        ?.put({ name, version, subpath: sub, code })
        .catch((e: unknown) => o.onSharedError?.(e, 'put'));
    }
    return built;
  }

  /**
   * The bundled module `subpath` of `name@version` (exact version). Built on first use, then read
   * from disk.
   * @throws BrowserIncompatibleError, NotFoundError (unknown package/version/subpath), InvalidInputError
   */
  async function module(name: string, version: string, subpath: string): Promise<PackageModule> {
    splitSpecifier(subpath ? `${name}/${subpath}` : name);
    if (!semver.valid(version))
      throw new InvalidInputError(
        'invalid_version',
        `version: ${JSON.stringify(version)} is not an exact version`,
      );
    const out = join(o.dir, 'out', `${enc(name)}@${version}`, `${subpath || 'index'}.mjs`);
    if (existsSync(out)) return { name, version, subpath, code: await readFile(out, 'utf8') };
    return await once(`build:${out}`, async () => {
      if (existsSync(out)) return { name, version, subpath, code: await readFile(out, 'utf8') };
      const stored = await o.shared?.get(name, version, subpath).catch((e: unknown) => {
        o.onSharedError?.(e, 'get');
        return undefined;
      });
      if (stored !== undefined) {
        stats.sharedHits++;
        await keep(out, stored);
        return { name, version, subpath, code: stored };
      }
      const root = await unpack(name, version);
      const ctx = { dir: o.dir, prefix, nodeEnv, resolve, built: () => stats.builds++ };
      // The requested module alone first: it says whether the package can run in a browser.
      let code = await bundlePackage(ctx, name, version, subpath, root);
      const shared = await once(`shared:${name}@${version}`, () => shared_(ctx, name, version, root));
      const mine = shared?.get(subpath);
      if (mine !== undefined) code = mine;
      const m = { name, version, subpath, code };
      await Promise.all([
        keep(out, code),
        o.shared?.put(m).catch((e: unknown) => o.onSharedError?.(e, 'put')),
      ]);
      return m;
    });
  }

  return {
    resolve,
    module,
    /** The URL a bundle of `name@version/subpath` is served at (`<urlPrefix>name@version/subpath`). */
    url(name: string, version: string, subpath = ''): string {
      return `${prefix}${name}@${version}${subpath ? `/${subpath}` : ''}`;
    },
    /**
     * An import map for a project's `dependencies` (name → range): each package and its subpaths
     * (`name/`) at the exact version its range resolves to.
     * @throws NotFoundError naming the package whose range nothing satisfies
     */
    async importMap(dependencies: Record<string, string>): Promise<{ imports: Record<string, string> }> {
      const imports: Record<string, string> = {};
      await Promise.all(
        Object.entries(dependencies).map(async ([name, range]) => {
          const v = await resolve(name, range);
          imports[name] = `${prefix}${name}@${v}`;
          imports[`${name}/`] = `${prefix}${name}@${v}/`;
        }),
      );
      return { imports };
    },
    /** Counts for tests and metrics: tarballs fetched, bundles built, and bundles read from `shared`, by this process. */
    stats(): Readonly<typeof stats> {
      return { ...stats };
    },
  };
}
export type PackageCache = ReturnType<typeof createPackageCache>;

/** Writes a bundle to its disk path atomically (temp file, then rename). */
async function keep(out: string, code: string): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  await writeFile(tmp, code);
  await rename(tmp, out);
}

function checkIntegrity(name: string, version: string, bytes: Buffer, integrity: string | undefined): void {
  const m = integrity?.match(/^(sha512|sha384|sha256|sha1)-(.+)$/);
  if (!m) return;
  const got = createHash(m[1] as string)
    .update(bytes)
    .digest('base64');
  if (got !== m[2])
    throw new TierUnavailableError(
      'integrity_mismatch',
      `${name}@${version}: tarball does not match its ${m[1]} integrity`,
      {
        tier: 'registry',
      },
    );
}

/** A `binding.gyp` or compiled `*.node` file anywhere in the package (not under node_modules). */
async function findNative(root: string): Promise<string | undefined> {
  const walk = async (dir: string, depth: number): Promise<string | undefined> => {
    if (depth > 8) return undefined;
    for (const d of await readdir(dir, { withFileTypes: true })) {
      if (d.name === 'node_modules') continue;
      const p = join(dir, d.name);
      if (d.isDirectory()) {
        const hit = await walk(p, depth + 1);
        if (hit) return hit;
      } else if (d.name === 'binding.gyp' || d.name.endsWith('.node')) return relative(root, p);
    }
    return undefined;
  };
  return await walk(root, 0);
}

function findIncompatible(e: unknown): BrowserIncompatibleError | undefined {
  if (e instanceof BrowserIncompatibleError) return e;
  for (const m of (e as { errors?: Array<{ detail?: unknown }> }).errors ?? [])
    if (m.detail instanceof BrowserIncompatibleError) return m.detail;
  return undefined;
}

/**
 * What a CommonJS `require(target)` of another package returns inside a bundle: the `default` of
 * the target's bundle (this cache gives every bundle one: `module.exports` of a CommonJS package,
 * the default or else the namespace of an ES module), imported statically (`esm-import:`).
 */
const CJS_REQUIRE = (target: string) =>
  `var ns = require(${JSON.stringify(`esm-import:${target}`)}).ns;\nmodule.exports = ns.default !== undefined ? ns.default : ns;\n`;

/** What bundling needs from the cache: version resolution, the URL prefix, NODE_ENV, the cache folder. */
export interface BundleContext {
  dir: string;
  prefix: string;
  nodeEnv: string;
  resolve(name: string, range: string): Promise<string>;
  /** Counts a build (stats). */
  built(): void;
}

/**
 * Bundles module \`subpath\` of \`name@version\` (unpacked at \`root\`) as browser ESM: only the package's
 * own files; a dependency imported by its exact URL, a peer (or undeclared package) left bare;
 * CommonJS named exports from \`cjs-module-lexer\`.
 * @throws BrowserIncompatibleError (native addon, Node built-in), NotFoundError (no such subpath),
 *   TierUnavailableError \`bundle_failed\` (esbuild's messages)
 */
export async function bundlePackage(
  ctx: BundleContext,
  name: string,
  version: string,
  subpath: string,
  root: string,
): Promise<string> {
  const { nodeEnv } = ctx;
  const pkgId = `${name}@${version}`;
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    gypfile?: boolean;
    dependencies?: Record<string, string>;
    peerDependencies?: Record<string, string>;
    optionalDependencies?: Record<string, string>;
    browser?: string | Record<string, string | false>;
  };
  const native = pkg.gypfile ? 'gypfile' : await findNative(root);
  if (native)
    throw new BrowserIncompatibleError(
      'browser_incompatible',
      `${pkgId} is a native addon (${native}): it cannot run in a browser`,
      {
        pkg: pkgId,
      },
    );
  const browserMap = typeof pkg.browser === 'object' && pkg.browser ? pkg.browser : {};
  const deps = { ...pkg.optionalDependencies, ...pkg.dependencies };
  const peers = pkg.peerDependencies ?? {};
  const work = await workDir(ctx, name, version, root);
  const spec = subpath ? `${name}/${subpath}` : name;
  const entryFile = await resolveEntry(work, spec, pkgId, nodeEnv);
  const cjsNames = (await isCjs(entryFile)) ? await cjsExports(entryFile) : undefined;
  // An ES module is re-exported as it is (a namespace import here would make a run-time copy of
  // it; see withStaticStarExports), with its default only when it has one.
  const contents = cjsNames
    ? `import m from ${JSON.stringify(spec)};\nexport default m;\n${cjsNames.length ? `export const { ${cjsNames.join(', ')} } = m;\n` : ''}`
    : `export * from ${JSON.stringify(spec)};\n${(await hasDefaultExport(entryFile)) ? `export { default } from ${JSON.stringify(spec)};\n` : ''}`;
  ctx.built();
  let result: esbuild.BuildResult;
  try {
    result = await esbuild.build({
      stdin: { contents, resolveDir: work, loader: 'js', sourcefile: `${spec}.entry.js` },
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2020',
      absWorkingDir: work,
      preserveSymlinks: false,
      conditions: ['browser', 'import', 'module', 'default', nodeEnv],
      mainFields: ['browser', 'module', 'main'],
      define: { 'process.env.NODE_ENV': JSON.stringify(nodeEnv), global: 'globalThis' },
      logLevel: 'silent',
      plugins: [
        externalsPlugin({
          ...ctx,
          name,
          pkgId,
          deps,
          peers,
          browserMap,
          inPackage: (p) => p === spec || p === name || p.startsWith(`${name}/`),
        }),
      ],
    });
  } catch (e) {
    const incompatible = findIncompatible(e);
    if (incompatible) throw incompatible;
    const errors = (e as { errors?: esbuild.Message[] }).errors ?? [];
    throw new TierUnavailableError(
      'bundle_failed',
      `${pkgId}${subpath ? `/${subpath}` : ''}: ${errors.map((m) => m.text).join('; ') || (e as Error).message}`,
      { tier: 'browser', cause: e },
    );
  }
  const file = result.outputFiles?.[0];
  if (!file)
    throw new TierUnavailableError('bundle_failed', `${pkgId}: esbuild wrote nothing`, { tier: 'browser' });
  return cjsNames ? file.text : withStaticStarExports(file.text);
}

/** A scratch folder where the package is `node_modules/<name>`, so its `exports` apply. */
async function workDir(ctx: BundleContext, name: string, version: string, root: string): Promise<string> {
  const work = join(ctx.dir, 'work', `${enc(name)}@${version}`);
  const link = join(work, 'node_modules', name);
  if (!existsSync(link)) {
    await mkdir(dirname(link), { recursive: true });
    await rm(link, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.symlink(root, link, 'dir'));
  }
  return work;
}

/**
 * Every public entry of an ES module package (its `exports` keys, no patterns) bundled in one
 * esbuild run with code splitting: what two entries share (svelte's runtime state, behind both
 * `svelte` and `svelte/internal/client`) is one chunk (`__chunks/chunk-<hash>`, imported by its
 * absolute URL), so a page holds one copy of it instead of one per entry. Node built-ins stay
 * imports here (`bundlePackage` of the requested module is what refuses them). Returns entry and
 * chunk code by subpath (`''` the main entry), or undefined when there are fewer than two ES module
 * entries, they share nothing, or the joint build fails (each entry is then bundled on its own).
 */
export async function bundleSharedEntries(
  ctx: BundleContext,
  name: string,
  version: string,
  root: string,
): Promise<Map<string, string> | undefined> {
  const pkgId = `${name}@${version}`;
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    exports?: unknown;
    dependencies?: Record<string, string>;
    peerDependencies?: Record<string, string>;
    optionalDependencies?: Record<string, string>;
    browser?: string | Record<string, string | false>;
  };
  if (!pkg.exports || typeof pkg.exports !== 'object' || Array.isArray(pkg.exports)) return undefined;
  const keys = Object.keys(pkg.exports).filter(
    (k) => k.startsWith('.') && !k.includes('*') && !k.endsWith('.json') && !k.endsWith('/'),
  );
  if (keys.length < 2) return undefined;
  const work = await workDir(ctx, name, version, root);
  const entries = new Map<string, string>();
  for (const key of keys) {
    const sub = key === '.' ? '' : key.slice(2);
    const spec = sub ? `${name}/${sub}` : name;
    let file: string;
    try {
      splitSpecifier(spec);
      file = await resolveEntry(work, spec, pkgId, ctx.nodeEnv);
    } catch {
      continue;
    }
    if (await isCjs(file)) return undefined;
    entries.set(
      sub,
      `export * from ${JSON.stringify(spec)};\n${(await hasDefaultExport(file)) ? `export { default } from ${JSON.stringify(spec)};\n` : ''}`,
    );
  }
  if (entries.size < 2) return undefined;
  const browserMap = typeof pkg.browser === 'object' && pkg.browser ? pkg.browser : {};
  ctx.built();
  let result: esbuild.BuildResult & { outputFiles: esbuild.OutputFile[] };
  try {
    result = await esbuild.build({
      // The entry's id is its `exports` key (`.`, `./internal/client`): never empty.
      entryPoints: [...entries.keys()].map((sub) => ({ in: `shared-entry:./${sub}`, out: sub || 'index' })),
      bundle: true,
      splitting: true,
      write: false,
      outdir: '/out',
      chunkNames: '__chunks/chunk-[hash]',
      format: 'esm',
      platform: 'browser',
      target: 'es2020',
      absWorkingDir: work,
      conditions: ['browser', 'import', 'module', 'default', ctx.nodeEnv],
      mainFields: ['browser', 'module', 'main'],
      define: { 'process.env.NODE_ENV': JSON.stringify(ctx.nodeEnv), global: 'globalThis' },
      logLevel: 'silent',
      plugins: [
        {
          name: 'shared-entries',
          setup(b) {
            b.onResolve({ filter: /^shared-entry:/ }, (a) => ({
              path: a.path.slice('shared-entry:'.length),
              namespace: 'shared-entry',
            }));
            b.onLoad({ filter: /.*/, namespace: 'shared-entry' }, (a) => ({
              contents: entries.get(a.path.replace(/^\.\/?/, '')) ?? '',
              resolveDir: work,
              loader: 'js',
            }));
          },
        },
        externalsPlugin({
          ...ctx,
          name,
          pkgId,
          deps: { ...pkg.optionalDependencies, ...pkg.dependencies },
          peers: pkg.peerDependencies ?? {},
          browserMap,
          inPackage: (p) => p === name || p.startsWith(`${name}/`),
          builtinsExternal: true,
        }),
      ],
    });
  } catch {
    return undefined;
  }
  // Nothing shared (entries that only re-export other packages): each entry on its own, as before.
  if (!result.outputFiles.some((f) => f.path.startsWith('/out/__chunks/'))) return undefined;
  const base = `${ctx.prefix}${pkgId}/__chunks/`;
  const out = new Map<string, string>();
  for (const f of result.outputFiles) {
    const rel = f.path.replace(/^\/out\//, '').replace(/\.js$/, '');
    const code = f.text.replace(
      /(["'])(?:\.\.?\/)+(?:__chunks\/)?(chunk-[A-Za-z0-9]+)\.js\1/g,
      `$1${base}$2$1`,
    );
    const isChunk = rel.startsWith('__chunks/');
    out.set(isChunk ? rel : rel === 'index' ? '' : rel, isChunk ? code : withStaticStarExports(code));
  }
  return out;
}

/** How a bundle of `name` treats imports (see `bundlePackage`). */
interface ExternalsOptions extends BundleContext {
  name: string;
  pkgId: string;
  deps: Record<string, string>;
  peers: Record<string, string>;
  browserMap: Record<string, string | false>;
  /** Whether a bare import is of the package being bundled (bundled, not imported). */
  inPackage(spec: string): boolean;
  /** Node built-ins stay imports instead of throwing BrowserIncompatibleError (the shared build). */
  builtinsExternal?: boolean;
}

/**
 * The esbuild plugin of a package bundle: the package's own files bundled; a regular dependency
 * imported by its exact URL, a peer (or undeclared package) left bare; a CommonJS require of another
 * package as a static import; a Node built-in refused (BrowserIncompatibleError).
 */
function externalsPlugin(o: ExternalsOptions): esbuild.Plugin {
  return {
    name: 'preview-externals',
    setup(b) {
      // A CommonJS `require(dep)`: a CJS shim around a static import of `dep`'s bundle.
      b.onResolve({ filter: /^esm-import:/ }, (args) => ({
        path: args.path.slice('esm-import:'.length),
        namespace: 'esm-import',
      }));
      b.onResolve({ filter: /.*/, namespace: 'esm-import' }, (args) => ({
        path: args.path,
        external: true,
      }));
      b.onLoad({ filter: /.*/, namespace: 'cjs-require' }, (args) => ({
        contents: CJS_REQUIRE(args.path),
        loader: 'js',
      }));
      b.onLoad({ filter: /.*/, namespace: 'esm-import' }, (args) => ({
        contents: `import * as ns from ${JSON.stringify(args.path)};\nexport { ns };\n`,
        loader: 'js',
      }));
      // `#name` is the package's own `imports` field: esbuild resolves it inside the package.
      b.onResolve({ filter: /^[^./#]/ }, async (args) => {
        if (args.kind === 'entry-point') return undefined;
        const s = args.path;
        // Inside the entry file (stdin) the package itself is bundled.
        if (o.inPackage(s)) return undefined;
        if (s in o.browserMap && o.browserMap[s] === false) return { path: s, namespace: 'empty' };
        if (BUILTINS.has(s) && o.builtinsExternal) return { path: s, external: true };
        if (BUILTINS.has(s))
          throw new BrowserIncompatibleError(
            'browser_incompatible',
            `${o.pkgId} imports the Node built-in ${JSON.stringify(s)}: it cannot run in a browser`,
            { pkg: o.pkgId },
          );
        const dep = splitSpecifier(s);
        const target =
          dep.name in o.peers || !(dep.name in o.deps)
            ? s
            : `${o.prefix}${dep.name}@${await o.resolve(dep.name, o.deps[dep.name] ?? '*')}${dep.subpath ? `/${dep.subpath}` : ''}`;
        // ESM output cannot `require()` at run time: a CommonJS require of another package
        // becomes a static import (CJS_REQUIRE).
        if (args.kind === 'require-call') return { path: target, namespace: 'cjs-require' };
        return { path: target, external: true };
      });
      b.onLoad({ filter: /.*/, namespace: 'empty' }, () => ({
        contents: 'export default {};',
        loader: 'js',
      }));
    },
  };
}

/**
 * esbuild keeps `export * from '<external>'` static only in the entry file itself; one level down
 * it becomes a run-time copy (`import * as x_star from '<url>'; __reExport(..., x_star)`), and those
 * names are missing from the bundle's static exports (vue's `initCustomFormatter`, re-exported by
 * @vue/runtime-dom from @vue/runtime-core). Each such copied module is re-exported statically too
 * (local exports win over `export *`, as ES modules define).
 */
export function withStaticStarExports(code: string): string {
  const extra: string[] = [];
  for (const m of code.matchAll(/^import \* as ([\w$]+) from ("[^"\n]+");$/gm)) {
    const name = (m[1] as string).replace(/\$/g, '\\$');
    if (new RegExp(`__reExport\\([\\w$]+, ${name}\\b`).test(code)) extra.push(`export * from ${m[2]};`);
  }
  return extra.length ? `${code}${extra.join('\n')}\n` : code;
}

async function resolveEntry(work: string, spec: string, pkgId: string, nodeEnv: string): Promise<string> {
  try {
    const r = await esbuild.build({
      stdin: { contents: `import ${JSON.stringify(spec)};`, resolveDir: work, loader: 'js' },
      bundle: true,
      write: false,
      metafile: true,
      platform: 'browser',
      format: 'esm',
      absWorkingDir: work,
      conditions: ['browser', 'import', 'module', 'default', nodeEnv],
      mainFields: ['browser', 'module', 'main'],
      logLevel: 'silent',
      plugins: [
        {
          name: 'only-entry',
          setup(b) {
            b.onResolve({ filter: /.*/ }, (args) =>
              args.importer && args.importer !== '<stdin>' ? { path: args.path, external: true } : undefined,
            );
          },
        },
      ],
    });
    const imp = r.metafile?.inputs['<stdin>']?.imports[0]?.path;
    if (!imp) throw new Error('no entry');
    return join(work, imp);
  } catch (e) {
    throw new NotFoundError(
      'module_not_found',
      `${spec}: not found in ${pkgId} (${(e as Error).message.split('\n')[0]})`,
    );
  }
}

/** Whether an ES module file exports `default` (`es-module-lexer`). */
async function hasDefaultExport(file: string): Promise<boolean> {
  await esmLexer.init;
  try {
    return esmLexer.parse(await readFile(file, 'utf8'))[1].some((e) => e.n === 'default');
  } catch {
    return false;
  }
}

async function isCjs(file: string): Promise<boolean> {
  if (file.endsWith('.mjs')) return false;
  if (file.endsWith('.cjs')) return true;
  const src = await readFile(file, 'utf8');
  return !/^\s*(import|export)\s/m.test(src) && /\b(module\.exports|exports\.|require\()/.test(src);
}

/** Named exports of a CommonJS file, following `module.exports = require('./x')` re-exports. */
async function cjsExports(file: string, seen = new Set<string>()): Promise<string[]> {
  await lexer;
  if (seen.has(file) || seen.size > 32) return [];
  seen.add(file);
  const { exports, reexports } = parseCjs(await readFile(file, 'utf8'));
  const names = new Set(exports);
  const req = createRequire(file);
  for (const r of reexports) {
    let next: string;
    try {
      next = req.resolve(r);
    } catch {
      continue;
    }
    for (const n of await cjsExports(next, seen)) names.add(n);
  }
  return [...names].filter((n) => IDENT_RE.test(n) && !RESERVED.has(n) && n !== '__esModule').sort();
}
