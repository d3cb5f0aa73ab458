import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST_PAGE } from './host-protocol.ts';

/**
 * Builds what a host serves for the bundler runtime (Node only; `@preview/browser-runtime/assets`):
 * the worker (with the Vue and Svelte compilers as chunks it loads on the first such file), the
 * service worker, esbuild.wasm, the host page (`host.html` and its script, framed by
 * RemoteBundlerRuntime), an offline vendor copy of React as ESM with its import map, and React
 * Refresh's runtime (`vendor/react-refresh.js`). Paths are relative to where the host serves them
 * (default: the origin's root).
 *
 * @example
 * const { files, importMap } = await buildBundlerAssets({ base: '/' });
 * for (const [path, body] of files) await writeFile(join('public', path), body);
 */
export const VENDOR_SPECIFIERS = [
  'react',
  'react/jsx-runtime',
  'react/jsx-dev-runtime',
  'react-dom',
  'react-dom/client',
];

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

export async function buildBundlerAssets(options: { base?: string; specifiers?: string[] } = {}): Promise<{
  files: Map<string, string | Uint8Array>;
  importMap: Record<string, string>;
}> {
  const esbuild = await import('esbuild');
  const base = options.base ?? '/';
  const specifiers = options.specifiers ?? VENDOR_SPECIFIERS;
  const files = new Map<string, string | Uint8Array>();

  // The worker is a module worker: chunks (the Vue compiler, loaded on the first .vue file) split
  // off. The service worker is a classic script: one file, no imports.
  const common = {
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir: '/out',
    logLevel: 'silent',
  } as const;
  const worker = await esbuild.build({
    ...common,
    // The host page's script (host.ts) is a module too: RemoteBundlerRuntime frames host.html.
    entryPoints: {
      'preview-bundler-worker': join(here, 'worker.ts'),
      'preview-bundler-host': join(here, 'host.ts'),
    },
    splitting: true,
    chunkNames: 'preview-bundler-[name]-[hash]',
  });
  const sw = await esbuild.build({
    ...common,
    entryPoints: { 'preview-sw': join(here, 'service-worker.ts') },
  });
  for (const f of [...worker.outputFiles, ...sw.outputFiles]) files.set(f.path.replace('/out/', ''), f.text);
  files.set('esbuild.wasm', await readFile(require.resolve('esbuild-wasm/esbuild.wasm')));
  files.set(
    HOST_PAGE,
    `<!doctype html><html><head><meta charset="utf-8"><title>preview runtime host</title></head><body><script type="module" src="${base}preview-bundler-host.js"></script></body></html>\n`,
  );

  // CommonJS packages have no static export list, so each vendor entry names its exports.
  const entries: Record<string, string> = {};
  const importMap: Record<string, string> = {};
  const entry = (spec: string) => {
    const mod = requireDevelopment(spec);
    const names = Object.keys(mod).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n) && n !== 'default');
    return (
      `import M from ${JSON.stringify(spec)};\nexport default M;\n` +
      (names.length ? `export const { ${names.join(', ')} } = M;\n` : '')
    );
  };
  for (const spec of specifiers) {
    const name = spec.replace(/[^a-z0-9]+/gi, '_');
    entries[name] = entry(spec);
    importMap[spec] = `${base}vendor/${name}.js`;
  }
  // React Fast Refresh's runtime (BundlerRuntime's `refreshUrl`): loaded by the page, not imported by apps.
  entries['react-refresh'] = entry('react-refresh/runtime');
  const vendor = await esbuild.build({
    stdin: undefined,
    entryPoints: Object.keys(entries).map((n) => ({ in: `vendor-entry:${n}`, out: n })),
    bundle: true,
    splitting: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    outdir: '/out',
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'silent',
    plugins: [
      {
        name: 'vendor-entries',
        setup(b) {
          b.onResolve({ filter: /^vendor-entry:/ }, (a) => ({
            path: a.path.slice('vendor-entry:'.length),
            namespace: 'vendor-entry',
          }));
          b.onLoad({ filter: /.*/, namespace: 'vendor-entry' }, (a) => ({
            contents: entries[a.path],
            resolveDir: here,
            loader: 'js',
          }));
        },
      },
    ],
  });
  for (const f of vendor.outputFiles) files.set(`vendor/${f.path.replace('/out/', '')}`, f.text);
  files.set('vendor/importmap.json', JSON.stringify({ imports: importMap }, null, 2));
  return { files, importMap };
}

/**
 * `require(spec)` as the vendor bundles are built (`process.env.NODE_ENV` "development"), whatever
 * this process runs with: a router that built its editor page with Vite in the same process has
 * NODE_ENV "production" by then, and react-refresh's runtime throws when loaded in production.
 */
function requireDevelopment(spec: string): Record<string, unknown> {
  const before = process.env['NODE_ENV'];
  process.env['NODE_ENV'] = 'development';
  try {
    return require(spec) as Record<string, unknown>;
  } finally {
    if (before === undefined) delete process.env['NODE_ENV'];
    else process.env['NODE_ENV'] = before;
  }
}
