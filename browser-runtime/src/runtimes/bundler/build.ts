import type { BuildOptions, BuildResult, Message, OutputFile, Plugin } from 'esbuild-wasm';
import { fastCompile, type Transform } from './fast-compile.ts';
import { type FrameClientConfig, frameClient } from './frame-client.ts';
import { compileSvelte, type SvelteCompiler } from './svelte.ts';
import { compileSfc, type VueSfcCompiler } from './vue.ts';

/** The part of esbuild's API the bundler uses: esbuild-wasm in the browser, native esbuild in Node. */
export interface EsbuildLike {
  /** When present, JS/TS modules are compiled with it (`fastCompile`), falling back to `build`. */
  transform?: Transform;
  build(options: BuildOptions & { write: false }): Promise<BuildResult & { outputFiles: OutputFile[] }>;
}

export type SourceFiles = Map<string, string | Uint8Array>;

/** One of esbuild's (or a compiler's) messages: where it points and what it says. */
export interface BuildProblem {
  /** Project path (`src/App.tsx`), when the problem is in a file. */
  file?: string;
  /** 1-based. */
  line?: number;
  /** 0-based, as esbuild counts. */
  column?: number;
  message: string;
  /** The source line the problem is on. */
  lineText?: string;
}

/** What one build produced for the page (see `ProjectBuilder.build`). */
export interface BuiltPreview {
  /** The page, rewritten to load the entry module, the import map and the frame client. */
  html: string;
  /** Module code by project path: only the modules that changed since the last build (all on the first). */
  modules: Array<[string, string]>;
  /** Files served as they are (images, fonts, public/…), by served path: only those that changed. */
  assets: Array<[string, string | Uint8Array]>;
  /**
   * What the page must do: `reload` (its HTML, import map or entry changed), `hot` (`modules` are
   * replaced in place, or the page reloads itself where they cannot be), `none` (nothing it runs changed).
   */
  update: 'reload' | 'hot' | 'none';
  /** How many modules esbuild compiled for this build (the others were kept or came from the store). */
  compiled: number;
}

/**
 * The bundle could not be built: `options.errors` lists each of esbuild's messages (file:line:col: text),
 * `options.problems` the same as objects. It has `PreviewError`'s shape but not its class: this file
 * runs in the bundler worker, whose bundle stays free of `@preview/tiers`; the worker posts `errors`
 * back and the runtime raises its own error.
 * @example throw new BuildError('build_failed', 'build failed: no entry', { errors: ['no entry'] })
 */
export class BuildError extends Error {
  readonly code: 'build_failed';
  readonly errors: string[];
  readonly problems: BuildProblem[];
  constructor(
    code: 'build_failed',
    message: string,
    options: { errors: string[]; problems?: BuildProblem[]; cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BuildError';
    this.code = code;
    this.errors = options.errors;
    this.problems = options.problems ?? options.errors.map((message) => ({ message }));
  }
}

/** A `BuildError` whose message names the first three of `errors`. */
const buildFailed = (errors: string[], cause?: unknown): BuildError =>
  new BuildError('build_failed', `build failed: ${errors.slice(0, 3).join('; ')}`, { errors, cause });

const CODE = /\.(m?[jt]sx?|css|json|vue|svelte)$/;
/** Modules run as JavaScript that may hold React components (React Fast Refresh registers them). */
const SCRIPT = /\.(m?[jt]sx?)$/;
const EXTENSIONS = ['', '.tsx', '.ts', '.jsx', '.js', '.mjs', '.css', '.json'];
const INDEXES = ['/index.tsx', '/index.ts', '/index.jsx', '/index.js'];
const ENTRY_FALLBACKS = [
  'src/main.tsx',
  'src/main.ts',
  'src/main.jsx',
  'src/main.js',
  'src/index.tsx',
  'src/index.jsx',
  'src/index.js',
  'index.js',
  'main.js',
];

function normalize(path: string): string {
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (!seg || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return out.join('/');
}
const dirOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');

function loaderFor(path: string): 'js' | 'jsx' | 'ts' | 'tsx' | 'css' | 'json' | 'dataurl' | 'text' {
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase() ?? '';
  if (ext === 'js' || ext === 'mjs' || ext === 'cjs') return 'jsx'; // JSX in .js is common in generated apps
  if (ext === 'jsx' || ext === 'ts' || ext === 'tsx' || ext === 'css' || ext === 'json') return ext;
  if (['svg', 'png', 'jpg', 'jpeg', 'gif', 'webp', 'ico', 'woff', 'woff2'].includes(ext)) return 'dataurl';
  return 'text';
}

const SCRIPT_RE =
  /<script\b[^>]*\btype\s*=\s*["']module["'][^>]*\bsrc\s*=\s*["']([^"']+)["'][^>]*>\s*<\/script>/i;

/** The module entry named by index.html, or a conventional one. */
export function findEntry(files: SourceFiles): { entry: string; html: string } {
  const rawHtml = files.get('index.html');
  const html =
    typeof rawHtml === 'string'
      ? rawHtml
      : rawHtml
        ? new TextDecoder().decode(rawHtml)
        : '<!doctype html><html><head><meta charset="utf-8"></head><body><div id="root"></div><div id="app"></div></body></html>';
  const m = SCRIPT_RE.exec(html);
  if (m?.[1]) {
    const entry = normalize(m[1].replace(/^\.\//, ''));
    if (files.has(entry)) return { entry, html: html.replace(m[0], '') };
    throw buildFailed([`index.html loads "${m[1]}", which is not in the project`]);
  }
  const entry = ENTRY_FALLBACKS.find((f) => files.has(f));
  if (!entry)
    throw buildFailed(['no entry: index.html has no <script type="module" src> and no src/main.* exists']);
  return { entry, html };
}

/**
 * Whether an import map's `imports` maps `spec`: an exact key, or a key ending in `/` that prefixes it
 * (`react/` maps `react/jsx-runtime`), as the browser resolves it (HTML import maps).
 */
export function importMapResolves(imports: Record<string, string>, spec: string): boolean {
  if (imports[spec] !== undefined) return true;
  for (let i = spec.lastIndexOf('/'); i > 0; i = spec.lastIndexOf('/', i - 1))
    if (imports[spec.slice(0, i + 1)] !== undefined) return true;
  return false;
}

/** `file:line:col: text` of a problem, as `BuildError.errors` lists it. */
const problemText = (p: BuildProblem): string =>
  `${p.file ? `${p.file}${p.line ? `:${p.line}:${p.column ?? 0}` : ''}: ` : ''}${p.message}`;

/** A `file:line:col: message` string (a compiler's) as a problem. */
function parseProblem(text: string): BuildProblem {
  const m = /^([^\s:]+):(\d+):(\d+):\s*([\s\S]*)$/.exec(text);
  if (m) return { file: m[1], line: Number(m[2]), column: Number(m[3]), message: m[4] ?? '' };
  const f = /^([^\s:]+\.[a-z]+):\s*([\s\S]*)$/.exec(text);
  return f ? { file: f[1], message: f[2] ?? '' } : { message: text };
}

const VFS = 'vfs';

/** The options of a `ProjectBuilder`. */
export interface ProjectBuilderOptions {
  previewId: string;
  /** Compiles `.vue` files (`@vue/compiler-sfc`); without it a `.vue` import fails naming the file. */
  vue?: VueSfcCompiler | (() => Promise<VueSfcCompiler>);
  /** Compiles `.svelte` files (`svelte/compiler`); without it a `.svelte` import fails naming the file. */
  svelte?: SvelteCompiler | (() => Promise<SvelteCompiler>);
  /**
   * URL of the React Refresh runtime (`vendor/react-refresh.js` of `buildBundlerAssets`). When set
   * and the import map has `react`, component modules register with it and edits keep their state.
   */
  refreshUrl?: string;
  /** Keeps compiled modules between builders (a reload, another preview of the same files). */
  store?: CompiledStore;
}

/** One compiled module, kept until its source (or the import map) changes. */
interface Compiled {
  source: string | Uint8Array;
  /** The module, its URLs under `SCOPE` (the preview's own scope replaces it when published). */
  code: string;
  /** Project paths it imports. */
  deps: string[];
}

/**
 * Where compiled modules outlive the builder (the worker keeps them in Cache Storage), so a new
 * preview of files compiled before, or the same preview after a reload, compiles nothing. Keys are
 * SHA-256 of everything the output depends on (`compileKey`).
 */
export interface CompiledStore {
  get(key: string): Promise<{ code: string; deps: string[] } | undefined>;
  put(key: string, value: { code: string; deps: string[] }): Promise<void>;
}

/** Compiled code names the preview's scope by this placeholder; `build` puts the real one in. */
const SCOPE = '/__preview-bundler/__preview_scope_7f3a__/';
/** What Vite defines in development. */
const DEFINE: Record<string, string> = {
  'process.env.NODE_ENV': '"development"',
  'import.meta.env.DEV': 'true',
  'import.meta.env.MODE': '"development"',
  'import.meta.env.PROD': 'false',
  'import.meta.env.SSR': 'false',
  'import.meta.env.BASE_URL': JSON.stringify(SCOPE),
};

/** Bumped when the compiled output's shape changes (a stored module from another format is not used). */
const FORMAT = 'modules-1';

/** The store key of one module's compiled output: SHA-256 (hex) of its path, source and the build's inputs. */
async function compileKey(path: string, source: string | Uint8Array, context: string): Promise<string> {
  const head = new TextEncoder().encode(`${FORMAT}\0${context}\0${path}\0`);
  const body = typeof source === 'string' ? new TextEncoder().encode(source) : source;
  const all = new Uint8Array(head.length + body.length);
  all.set(head);
  all.set(body, head.length);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Builds a project the way Vite's dev server serves it: every module is compiled on its own by
 * esbuild (TS/JSX, JSON, CSS as a module injecting a `<style>`, `.vue` and `.svelte` components,
 * assets as their URL), its relative imports rewritten to the module URLs under the preview's scope
 * (`/__preview-bundler/<id>/__m/<path>`), bare imports left to the page's import map. Compiled
 * modules are kept: a build compiles only the modules whose source changed, and reports only the
 * modules whose code changed, so an edit costs one module. Not safe for concurrent `build` calls.
 */
export class ProjectBuilder {
  readonly #esbuild: EsbuildLike | (() => Promise<EsbuildLike>);
  readonly #o: ProjectBuilderOptions;
  readonly #compiled = new Map<string, Compiled>();
  /** What the page was last given: module code by path, assets by served path, its HTML (build id aside). */
  readonly #publishedModules = new Map<string, string>();
  readonly #publishedAssets = new Map<string, string | Uint8Array>();
  #publishedPage: string | undefined;
  #vendorKey = '';
  /** Modules compiled by esbuild so far. */
  #compiles = 0;
  #vue: VueSfcCompiler | undefined;
  #svelte: SvelteCompiler | undefined;

  /** `esbuild` may be a function resolving to it: it is then asked only when a module must be compiled. */
  constructor(esbuild: EsbuildLike | (() => Promise<EsbuildLike>), options: ProjectBuilderOptions) {
    this.#esbuild = esbuild;
    this.#o = options;
  }

  /** Where the page loads module `path` from (origin-relative, `SCOPE` until published). */
  #moduleUrl(path: string): string {
    return `${SCOPE}__m/${path}`;
  }

  /** Where an asset at project path `path` is served (origin-relative; `public/` is the root). */
  #assetUrl(path: string): string {
    return `${SCOPE}${servedPath(path)}`;
  }

  /**
   * Builds the modules reachable from the entry (index.html's module script, or a conventional one).
   * Bare imports stay imports when `vendor` (an import map's `imports`: the router's map of the
   * project's dependencies, or the offline vendor map) resolves them; everything else comes from `files`.
   * @throws BuildError naming each unresolved file or package and each syntax error, with locations
   */
  async build(files: SourceFiles, vendor: Record<string, string>, buildId = 0): Promise<BuiltPreview> {
    const vendorKey = mapKey(vendor);
    if (vendorKey !== this.#vendorKey) this.#compiled.clear();
    this.#vendorKey = vendorKey;
    const { entry, html } = findEntry(files);
    const before = this.#compiles;
    const reachable = await this.#walk(files, vendor, entry);
    const modules: Array<[string, string]> = [];
    const scope = `/__preview-bundler/${this.#o.previewId}/`;
    for (const path of reachable) {
      const code = (this.#compiled.get(path)?.code ?? '').replaceAll(SCOPE, scope);
      if (this.#publishedModules.get(path) !== code) modules.push([path, code]);
    }
    const assets: Array<[string, string | Uint8Array]> = [];
    for (const [p, v] of files) {
      if (p === 'index.html' || p === 'package.json' || CODE.test(p)) continue;
      const served = servedPath(p);
      if (!sameContent(this.#publishedAssets.get(served), v)) assets.push([served, v]);
    }
    const react = this.#o.refreshUrl && importMapResolves(vendor, 'react') ? this.#o.refreshUrl : undefined;
    const page = rewriteHtml(html, vendor, this.#o.previewId, 0, { entry, refreshUrl: react });
    const update =
      page !== this.#publishedPage || assets.length > 0
        ? 'reload'
        : modules.some(([p]) => p === entry)
          ? 'reload'
          : modules.length
            ? 'hot'
            : 'none';
    for (const [p, c] of modules) this.#publishedModules.set(p, c);
    for (const [p, v] of assets) this.#publishedAssets.set(p, v);
    this.#publishedPage = page;
    return {
      // Every module preloaded at once (no import waterfall through the service worker); the list
      // is not part of what makes a page change (a hot update does not rewrite the page).
      html: rewriteHtml(html, vendor, this.#o.previewId, buildId, {
        entry,
        refreshUrl: react,
        preload: reachable.filter((p) => p !== entry),
      }),
      modules,
      assets,
      update,
      compiled: this.#compiles - before,
    };
  }

  /** Compiles what changed, layer by layer from the entry; returns every reachable module path. */
  async #walk(files: SourceFiles, vendor: Record<string, string>, entry: string): Promise<string[]> {
    const seen = new Set([entry]);
    let frontier = [entry];
    while (frontier.length) {
      let stale = frontier.filter((p) => {
        const c = this.#compiled.get(p);
        return !c || !sameContent(c.source, files.get(p)) || c.deps.some((d) => !files.has(d));
      });
      if (stale.length && this.#o.store) stale = await this.#fromStore(files, vendor, stale);
      if (stale.length) await this.#compile(files, vendor, stale);
      const next: string[] = [];
      for (const p of frontier)
        for (const d of this.#compiled.get(p)?.deps ?? [])
          if (!seen.has(d)) {
            seen.add(d);
            next.push(d);
          }
      frontier = next;
    }
    return [...seen];
  }

  /** What a module's compiled output depends on besides its path and source. */
  #context(vendor: Record<string, string>): string {
    const react = Boolean(this.#o.refreshUrl) && importMapResolves(vendor, 'react');
    return `${mapKey(vendor)}\0${react}`;
  }

  /** Takes what the store has of `paths` (whose deps all exist); returns the paths still to compile. */
  async #fromStore(files: SourceFiles, vendor: Record<string, string>, paths: string[]): Promise<string[]> {
    const store = this.#o.store as CompiledStore;
    const context = this.#context(vendor);
    const found = await Promise.all(
      paths.map(async (p) => {
        const source = files.get(p) ?? '';
        try {
          const hit = await store.get(await compileKey(p, source, context));
          if (!hit || hit.deps.some((d) => !files.has(d))) return true;
          this.#compiled.set(p, { source, code: hit.code, deps: hit.deps });
          return false;
        } catch {
          return true; // a store that fails is a miss
        }
      }),
    );
    return paths.filter((_, i) => found[i]);
  }

  /** `fastCompile` of each JS/TS module of `paths`; returns the paths it could not compile. */
  async #compileFast(
    transform: Transform,
    files: SourceFiles,
    vendor: Record<string, string>,
    paths: string[],
    react: boolean,
  ): Promise<string[]> {
    const left = await Promise.all(
      paths.map(async (path) => {
        const source = files.get(path);
        if (!SCRIPT.test(path) || typeof source !== 'string') return path;
        const out = await fastCompile(
          transform,
          path,
          source,
          { loader: loaderFor(path) as 'js', jsx: 'automatic', target: 'es2022', define: DEFINE },
          (spec) => {
            if (/^(\.{1,2}\/|\/)/.test(spec)) {
              const dep = resolveFile(files, spec, `/${dirOf(path)}`);
              return dep ? { url: this.#moduleUrl(dep), dep } : undefined;
            }
            return /^(https?:|data:)/.test(spec) || importMapResolves(vendor, spec) ? 'keep' : undefined;
          },
        );
        if (!out) return path;
        const code = react ? out.code + refreshCall(path, out.exports, out.star, source) : out.code;
        this.#keep(path, source, code, out.deps, vendor);
        return undefined;
      }),
    );
    return left.filter((p): p is string => p !== undefined);
  }

  /** Keeps a compiled module (and hands it to the store). */
  #keep(
    path: string,
    source: string | Uint8Array,
    code: string,
    deps: string[],
    vendor: Record<string, string>,
  ) {
    this.#compiled.set(path, { source, code, deps });
    const store = this.#o.store;
    if (store)
      void compileKey(path, source, this.#context(vendor))
        .then((key) => store.put(key, { code, deps }))
        .catch(() => {}); // a store that fails only costs a compile later
  }

  /** One esbuild run over `paths` as entry points, every import external. @throws BuildError */
  async #compile(files: SourceFiles, vendor: Record<string, string>, paths: string[]): Promise<void> {
    if (paths.some((p) => p.endsWith('.vue')) && !this.#vue && this.#o.vue)
      this.#vue = typeof this.#o.vue === 'function' ? await this.#o.vue() : this.#o.vue;
    if (paths.some((p) => p.endsWith('.svelte')) && !this.#svelte && this.#o.svelte)
      this.#svelte = typeof this.#o.svelte === 'function' ? await this.#o.svelte() : this.#o.svelte;
    const deps = new Map<string, Set<string>>(paths.map((p): [string, Set<string>] => [p, new Set()]));
    const react = Boolean(this.#o.refreshUrl) && importMapResolves(vendor, 'react');
    this.#compiles += paths.length;
    const esbuild = typeof this.#esbuild === 'function' ? await this.#esbuild() : this.#esbuild;
    const rest = esbuild.transform
      ? await this.#compileFast(esbuild.transform, files, vendor, paths, react)
      : paths;
    if (!rest.length) return;
    let result: BuildResult & { outputFiles: OutputFile[] };
    try {
      result = await esbuild.build({
        entryPoints: rest.map((p, i) => ({ in: p, out: String(i) })),
        bundle: true,
        write: false,
        format: 'esm',
        target: 'es2022',
        outdir: '/out',
        jsx: 'automatic',
        define: DEFINE,
        logLevel: 'silent',
        plugins: [this.#plugin(files, vendor, deps)],
      });
    } catch (e) {
      const errors = (e as { errors?: Message[] }).errors;
      const problems: BuildProblem[] = errors?.length
        ? errors.map((m) => {
            const fromCompiler = !m.location && /^[^\s:]+\.[a-z]+:/.test(m.text);
            if (fromCompiler) return parseProblem(m.text);
            return {
              ...(m.location
                ? {
                    file: m.location.file.replace(/^vfs:/, ''),
                    line: m.location.line,
                    column: m.location.column,
                    lineText: m.location.lineText,
                  }
                : {}),
              message: m.text,
            };
          })
        : [{ message: String(e) }];
      const texts = problems.map(problemText);
      throw new BuildError('build_failed', `build failed: ${texts.slice(0, 3).join('; ')}`, {
        errors: texts,
        problems,
        cause: e,
      });
    }
    rest.forEach((path, i) => {
      const js = result.outputFiles.find((f) => f.path === `/out/${i}.js`)?.text ?? '';
      const css = result.outputFiles.find((f) => f.path === `/out/${i}.css`)?.text;
      let code = js;
      if (path.endsWith('.css'))
        code = `globalThis.__previewBundler?.style(${JSON.stringify(path)}, ${JSON.stringify(css ?? '')});\n`;
      else if (css)
        code += `\nglobalThis.__previewBundler?.style(${JSON.stringify(path)}, ${JSON.stringify(css)});\n`;
      if (react && SCRIPT.test(path)) code += refreshFooter(path, js, files.get(path));
      this.#keep(path, files.get(path) ?? '', code, [...(deps.get(path) ?? [])], vendor);
    });
  }

  /** Resolves and loads from `files`; records each module's project imports in `deps`. */
  #plugin(files: SourceFiles, vendor: Record<string, string>, deps: Map<string, Set<string>>): Plugin {
    return {
      name: 'preview-modules',
      setup: (b) => {
        b.onResolve({ filter: /.*/ }, (args) => {
          if (args.kind === 'entry-point') return { path: args.path, namespace: VFS };
          const spec = args.path;
          if (/^(\.{1,2}\/|\/)/.test(spec)) {
            const path = resolveFile(files, spec, args.resolveDir);
            if (!path) return { errors: [{ text: `cannot find "${spec}" (imported by ${args.importer})` }] };
            if (args.kind === 'url-token') return { path: this.#assetUrl(path), external: true };
            if (args.kind === 'import-rule') return { path, namespace: VFS };
            deps.get(args.importer)?.add(path);
            return { path: this.#moduleUrl(path), external: true };
          }
          if (/^(https?:|data:)/.test(spec)) return { path: spec, external: true };
          if (importMapResolves(vendor, spec)) return { path: spec, external: true };
          const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
          const known = Object.keys(vendor).filter((k) => !k.endsWith('/'));
          return {
            errors: [
              {
                text: `package "${spec}" is not in the preview's import map (it has ${known.join(', ') || 'no packages'}): add "${pkg}" to package.json dependencies`,
              },
            ],
          };
        });
        b.onLoad({ filter: /.*/, namespace: VFS }, (args) => {
          const v = files.get(args.path);
          if (v === undefined) return { errors: [{ text: `missing ${args.path}` }] };
          const resolveDir = `/${dirOf(args.path)}`;
          const text = () => (typeof v === 'string' ? v : new TextDecoder().decode(v));
          if (args.path.endsWith('.vue')) {
            if (!this.#vue) return { errors: [{ text: `${args.path}: no Vue compiler in this bundler` }] };
            const c = compileSfc(this.#vue, args.path, text());
            if (c.errors.length) return { errors: c.errors.map((t) => ({ text: t })) };
            const styles = c.styles.length
              ? `\nglobalThis.__previewBundler?.style(${JSON.stringify(args.path)}, ${JSON.stringify(c.styles.join('\n'))});`
              : '';
            return { contents: c.code + styles, loader: c.loader, resolveDir };
          }
          if (args.path.endsWith('.svelte')) {
            if (!this.#svelte)
              return { errors: [{ text: `${args.path}: no Svelte compiler in this bundler` }] };
            const c = compileSvelte(this.#svelte, args.path, text());
            if (c.errors.length) return { errors: c.errors.map((t) => ({ text: t })) };
            return { contents: c.code, loader: 'js', resolveDir };
          }
          if (!CODE.test(args.path))
            return { contents: `export default ${JSON.stringify(this.#assetUrl(args.path))};`, loader: 'js' };
          return { contents: v, loader: loaderFor(args.path), resolveDir };
        });
      },
    };
  }
}

/**
 * The project file a relative or root-relative import names (`./App` → `src/App.tsx`, `/vite.svg` →
 * `public/vite.svg` as Vite serves it), from the importing module's directory (`/src`).
 */
function resolveFile(files: SourceFiles, spec: string, resolveDir: string): string | undefined {
  const clean = spec.replace(/[?#].*$/, '');
  const base = clean.startsWith('/')
    ? normalize(clean)
    : normalize(`${resolveDir.replace(/^\//, '')}/${clean}`);
  const found = [...EXTENSIONS.map((e) => base + e), ...INDEXES.map((e) => base + e)].find((c) =>
    files.has(c),
  );
  return found ?? (clean.startsWith('/') && files.has(`public${clean}`) ? `public${clean}` : undefined);
}

/** An import map's `imports` as text that does not depend on the order of its keys. */
const mapKey = (imports: Record<string, string>): string =>
  JSON.stringify(Object.entries(imports).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** Whether two file contents are the same (bytes compared: a structured clone makes new arrays). */
function sameContent(a: string | Uint8Array | undefined, b: string | Uint8Array | undefined): boolean {
  if (a === b) return true;
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Where a project file is served under the preview's scope: `public/` is the root. */
const servedPath = (p: string): string => (p.startsWith('public/') ? p.slice('public/'.length) : p);

/**
 * React Fast Refresh without Babel: esbuild's ESM output ends with one `export { local as name, … }`
 * clause, so the module's exports are known by their local bindings; the footer hands them to the
 * frame client, which registers each one that looks like a component (`<path> <export>`) with
 * `react-refresh` and marks the module a refresh boundary when every export is one. The signature of
 * every component of the module is the module's hook calls in order (`useState(`, `useMemo(`…):
 * a change there remounts the module's components instead of keeping state that no longer fits.
 */
function refreshFooter(path: string, js: string, source: string | Uint8Array | undefined): string {
  const body = js.replace(/\/\/# sourceMappingURL=.*\s*$/, '');
  const clause = /\nexport\s*\{([^}]*)\};?\s*$/.exec(body);
  const exports: Array<[string, string]> = [];
  for (const item of (clause?.[1] ?? '').split(',')) {
    const m = /^\s*([\w$]+)(?:\s+as\s+([\w$]+))?\s*$/.exec(item);
    if (m?.[1]) exports.push([m[2] ?? m[1], m[1]]);
  }
  return refreshCall(path, exports, /^export\s*\*/m.test(body), source);
}

/** The footer's call: `exports` as `[exported name, local binding]`. */
function refreshCall(
  path: string,
  exports: Array<[string, string]>,
  star: boolean,
  source: string | Uint8Array | undefined,
): string {
  const entries = exports.map(([name, local]) => `${JSON.stringify(name)}: ${local}`);
  const text = typeof source === 'string' ? source : source ? new TextDecoder().decode(source) : '';
  const hooks = (text.match(/\buse[A-Z$][\w$]*\s*\(/g) ?? []).map((h) => h.replace(/\s/g, '')).join('');
  return `\nglobalThis.__previewBundler?.refresh(${JSON.stringify(path)}, {${entries.join(', ')}}, ${JSON.stringify(hooks)}, ${star});\n`;
}

/**
 * Injects the import map, the frame client (`frame-client.ts`: reload, hot updates, the error
 * overlay), the React Refresh preamble when `refreshUrl` is given, and the entry module; URLs stay
 * relative to the preview's scope. The page says `{type: 'hello', build}` on load: a page that loaded
 * while a newer build was being published (and so missed its message) is reloaded by the runtime.
 */
export function rewriteHtml(
  html: string,
  vendor: Record<string, string>,
  previewId: string,
  buildId = 0,
  options: {
    entry?: string;
    refreshUrl?: string | undefined;
    /** Module paths to `<link rel="modulepreload">` (the entry's graph). */
    preload?: string[];
  } = {},
): string {
  const cfg: FrameClientConfig = {
    channel: `preview-bundler:${previewId}`,
    build: Number(buildId),
    modules: `/__preview-bundler/${previewId}/__m/`,
  };
  const json = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');
  const head = [
    `<script type="importmap">${json({ imports: vendor })}</script>`,
    `<script>(${frameClient.toString()})(${json(cfg)})</script>`,
    options.refreshUrl
      ? `<script type="module">import RR from ${json(options.refreshUrl)};RR.injectIntoGlobalHook(window);window.$RefreshReg$=()=>{};window.$RefreshSig$=()=>(t)=>t;globalThis.__previewBundler.setRefreshRuntime(RR);</script>`
      : '',
    ...(options.preload ?? []).map((p) => `<link rel="modulepreload" href="${cfg.modules}${encodeURI(p)}">`),
  ].join('');
  const tail = options.entry ? `<script type="module" src="${cfg.modules}${options.entry}"></script>` : '';
  // The preview lives under its scope path, so origin-absolute references in the page become relative.
  html = html.replace(/\b(src|href)=(["'])\/(?!\/)/gi, '$1=$2./');
  let out = /<head[^>]*>/i.test(html) ? html.replace(/<head[^>]*>/i, (m) => m + head) : head + html;
  out = /<\/body>/i.test(out) ? out.replace(/<\/body>/i, `${tail}</body>`) : out + tail;
  return out;
}
