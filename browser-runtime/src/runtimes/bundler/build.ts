import type { BuildOptions, BuildResult, Message, OutputFile, Plugin } from 'esbuild-wasm';
import { compileSfc, type VueSfcCompiler } from './vue.ts';

/** The part of esbuild's API the bundler uses: esbuild-wasm in the browser, native esbuild in Node. */
export interface EsbuildLike {
  build(options: BuildOptions & { write: false }): Promise<BuildResult & { outputFiles: OutputFile[] }>;
}

export type SourceFiles = Map<string, string | Uint8Array>;

export interface BuiltPreview {
  /** The page, rewritten to load the bundle and the import map. */
  html: string;
  js: string;
  css: string;
  /** Files served as they are (images, fonts, public/…). */
  assets: Map<string, string | Uint8Array>;
}

/**
 * The bundle could not be built: `options.errors` lists each of esbuild's messages (file:line:col: text).
 * It has `PreviewError`'s shape but not its class: this file runs in the bundler worker, whose bundle
 * stays free of `@preview/tiers`; the worker posts `errors` back and the runtime raises its own error.
 * @example throw new BuildError('build_failed', 'build failed: no entry', { errors: ['no entry'] })
 */
export class BuildError extends Error {
  readonly code: 'build_failed';
  readonly errors: string[];
  constructor(code: 'build_failed', message: string, options: { errors: string[]; cause?: unknown }) {
    super(message, options);
    this.name = 'BuildError';
    this.code = code;
    this.errors = options.errors;
  }
}

/** A `BuildError` whose message names the first three of `errors`. */
const buildFailed = (errors: string[], cause?: unknown): BuildError =>
  new BuildError('build_failed', `build failed: ${errors.slice(0, 3).join('; ')}`, { errors, cause });

const CODE = /\.(m?[jt]sx?|css|json|vue)$/;
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

/**
 * Builds the project in memory. Bare imports stay imports when `options.vendor` (an import map's
 * `imports`: the router's map of the project's dependencies, or the offline vendor map) resolves
 * them, and are resolved by the page's import map; everything else comes from `files`.
 * @throws BuildError naming each unresolved file or package (esbuild's messages)
 */
export async function buildProject(
  esbuild: EsbuildLike,
  files: SourceFiles,
  options: {
    vendor: Record<string, string>;
    previewId: string;
    /** Names this build in the page, which asks the runtime on load whether it is the latest. @default 0 */
    buildId?: number;
    /** Compiles `.vue` files (`@vue/compiler-sfc`); without it a `.vue` import fails naming the file. */
    vue?: VueSfcCompiler;
  },
): Promise<BuiltPreview> {
  const { entry, html } = findEntry(files);
  const vendor = options.vendor;
  /** CSS of each compiled `.vue` file's `<style>` blocks, by `vue-style:<path>?<index>`. */
  const vueStyles = new Map<string, string>();
  const vfs: Plugin = {
    name: 'preview-vfs',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return { path: entry, namespace: 'vfs' };
        const spec = args.path;
        if (spec.startsWith('vue-style:')) return { path: spec, namespace: 'vue-style' };
        if (/^(\.{1,2}\/|\/)/.test(spec)) {
          const base = spec.startsWith('/')
            ? normalize(spec)
            : normalize(`${args.resolveDir.replace(/^\//, '')}/${spec}`);
          for (const cand of [...EXTENSIONS.map((e) => base + e), ...INDEXES.map((e) => base + e)])
            if (files.has(cand)) return { path: cand, namespace: 'vfs' };
          return { errors: [{ text: `cannot find "${spec}" (imported by ${args.importer})` }] };
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
      b.onLoad({ filter: /.*/, namespace: 'vue-style' }, (args) => ({
        contents: vueStyles.get(args.path) ?? '',
        loader: 'css',
        resolveDir: `/${dirOf(args.path.slice('vue-style:'.length).replace(/\?\d+$/, ''))}`,
      }));
      b.onLoad({ filter: /.*/, namespace: 'vfs' }, (args) => {
        const v = files.get(args.path);
        if (v === undefined) return { errors: [{ text: `missing ${args.path}` }] };
        if (args.path.endsWith('.vue')) {
          if (!options.vue) return { errors: [{ text: `${args.path}: no Vue compiler in this bundler` }] };
          const text = typeof v === 'string' ? v : new TextDecoder().decode(v);
          const c = compileSfc(options.vue, args.path, text);
          if (c.errors.length) return { errors: c.errors.map((t) => ({ text: t })) };
          const imports = c.styles.map((css, i) => {
            vueStyles.set(`vue-style:${args.path}?${i}`, css);
            return `import ${JSON.stringify(`vue-style:${args.path}?${i}`)};`;
          });
          return {
            contents: `${c.code}\n${imports.join('\n')}`,
            loader: c.loader,
            resolveDir: `/${dirOf(args.path)}`,
          };
        }
        return { contents: v, loader: loaderFor(args.path), resolveDir: `/${dirOf(args.path)}` };
      });
    },
  };
  let result: BuildResult & { outputFiles: OutputFile[] };
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      format: 'esm',
      target: 'es2022',
      outdir: '/out',
      entryNames: 'bundle',
      jsx: 'automatic',
      sourcemap: 'inline',
      define: {
        'process.env.NODE_ENV': '"development"',
        'import.meta.env.DEV': 'true',
        'import.meta.env.MODE': '"development"',
        'import.meta.env.PROD': 'false',
        'import.meta.env.SSR': 'false',
      },
      logLevel: 'silent',
      plugins: [vfs],
    });
  } catch (e) {
    const errors = (e as { errors?: Message[] }).errors;
    throw buildFailed(
      errors?.length
        ? errors.map(
            (m) =>
              `${m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : ''}${m.text}`,
          )
        : [String(e)],
      e,
    );
  }
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'))?.text ?? '';
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'))?.text ?? '';
  const assets = new Map<string, string | Uint8Array>();
  for (const [p, v] of files) {
    if (p === 'index.html' || CODE.test(p) || p === 'package.json') continue;
    assets.set(p.startsWith('public/') ? p.slice('public/'.length) : p, v);
  }
  return { html: rewriteHtml(html, vendor, options.previewId, options.buildId ?? 0), js, css, assets };
}

/**
 * Injects the import map, the bundle, its CSS and the reload listener; URLs stay relative to the
 * preview's scope. The listener reloads on `'reload'`, and on load says `{type: 'hello', build}`:
 * a page that loaded while a newer build was being published (and so missed its `'reload'`) is
 * told to reload by the runtime.
 */
export function rewriteHtml(
  html: string,
  vendor: Record<string, string>,
  previewId: string,
  buildId = 0,
): string {
  const head = [
    `<script type="importmap">${JSON.stringify({ imports: vendor })}</script>`,
    '<link rel="stylesheet" href="./__bundle.css">',
    `<script>(()=>{const c=new BroadcastChannel(${JSON.stringify(`preview-bundler:${previewId}`)});c.onmessage=(e)=>{if(e.data==='reload')location.reload()};c.postMessage({type:'hello',build:${Number(buildId)}})})()</script>`,
  ].join('');
  const tail = '<script type="module" src="./__bundle.js"></script>';
  // The preview lives under its scope path, so origin-absolute references in the page become relative.
  html = html.replace(/\b(src|href)=(["'])\/(?!\/)/gi, '$1=$2./');
  let out = /<head[^>]*>/i.test(html) ? html.replace(/<head[^>]*>/i, (m) => m + head) : head + html;
  out = /<\/body>/i.test(out) ? out.replace(/<\/body>/i, `${tail}</body>`) : out + tail;
  return out;
}
