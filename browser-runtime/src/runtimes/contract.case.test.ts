/**
 * The one contract every `PreviewRuntime` passes. Not run on its own (vitest excludes
 * `*.case.test.ts`): each implementation's test calls `runRuntimeContract`, and every case runs for
 * every implementation (one a runtime cannot pass is a defect of the runtime or of its fake).
 *
 * @example
 * runRuntimeContract({
 *   name: 'process (Vite in a child process)',
 *   create: async () => ({ runtime: new ProcessRuntime(), render: (url, text) => renderIn(page, url, text) }),
 * });
 */
import { InvalidInputError, type ProjectFiles } from '@preview/tiers';
import { afterEach, describe, expect, it } from 'vitest';
import type { PreviewRuntime, ServerReady } from './types.ts';

export const RUNTIME_CONTRACT_CASES = [
  'vanilla project serves and renders',
  'writeFile changes what renders',
  'react project with JSX, TSX, CSS and react renders',
  'a broken module reports an error',
  'bad paths are rejected',
  'teardown is repeat-safe',
] as const;
export type RuntimeContractCase = (typeof RUNTIME_CONTRACT_CASES)[number];

export interface RuntimeContractSubject {
  runtime: PreviewRuntime;
  /** Loads `url` afresh and returns the page's body text once it contains `waitFor` (or what it has at the timeout). */
  render(url: string, waitFor: string): Promise<string>;
  cleanup?: () => Promise<void>;
}

export interface RuntimeContractOptions {
  name: string;
  create: () => Promise<RuntimeContractSubject>;
  timeoutMs?: number;
}

export const VANILLA_PROJECT: ProjectFiles = {
  'index.html':
    '<!doctype html><html><head><title>v</title></head><body><div id="app"></div><script type="module" src="/src/main.js"></script></body></html>',
  'src/main.js':
    "import './style.css';\nimport { message } from './message.js';\ndocument.querySelector('#app').textContent = 'vanilla:' + message;\n",
  'src/message.js': "export const message = 'one';\n",
  'src/style.css': '#app { color: rgb(1, 2, 3); }\n',
  'package.json': JSON.stringify({
    name: 'contract-vanilla',
    private: true,
    type: 'module',
    scripts: { dev: 'vite' },
  }),
};

export const REACT_PROJECT: ProjectFiles = {
  'index.html':
    '<!doctype html><html><head><title>r</title></head><body><div id="root"></div><script type="module" src="/src/main.jsx"></script></body></html>',
  'src/main.jsx':
    "import { createRoot } from 'react-dom/client';\nimport { App } from './App.tsx';\nimport './app.css';\ncreateRoot(document.getElementById('root')).render(<App name=\"contract\" />);\n",
  'src/App.tsx':
    'import { useState } from \'react\';\ninterface Props { name: string }\nexport function App({ name }: Props) {\n  const [n] = useState<number>(2);\n  return <main className="app">react:{name}:{n * 21}</main>;\n}\n',
  'src/app.css': '.app { color: rgb(4, 5, 6); }\n',
  'package.json': JSON.stringify({
    name: 'contract-react',
    private: true,
    type: 'module',
    scripts: { dev: 'vite' },
    dependencies: { react: '^19.0.0', 'react-dom': '^19.0.0' },
    devDependencies: { vite: '^8.0.0', '@vitejs/plugin-react': '^6.0.0' },
  }),
  'vite.config.js':
    "import react from '@vitejs/plugin-react';\nimport { defineConfig } from 'vite';\nexport default defineConfig({ plugins: [react()] });\n",
};

export function runRuntimeContract(options: RuntimeContractOptions): void {
  const timeout = options.timeoutMs ?? 120_000;

  describe(`PreviewRuntime contract: ${options.name}`, () => {
    const live: RuntimeContractSubject[] = [];
    const make = async () => {
      const s = await options.create();
      live.push(s);
      return s;
    };
    const start = async (files: ProjectFiles) => {
      const s = await make();
      const ready: ServerReady[] = [];
      s.runtime.on('server-ready', (e) => ready.push(e));
      await s.runtime.mount(files);
      await s.runtime.install();
      const r = await s.runtime.run();
      return { s, r, ready };
    };

    afterEach(async () => {
      const errors: unknown[] = [];
      for (const s of live.splice(0)) {
        await s.runtime.teardown().catch((e) => errors.push(e));
        await s.cleanup?.().catch((e) => errors.push(e));
      }
      if (errors.length) throw new AggregateError(errors, 'runtime contract teardown failed');
    }, timeout);

    const test = (name: RuntimeContractCase, fn: () => Promise<void>) => it(name, fn, timeout);
    /**
     * Renders until the page shows `text` (a third of the test's time, so two such waits and the
     * start fit in it). Each miss is logged with what the page showed or why it did not load: a
     * test that fails says whether the dev server served old code, nothing, or never answered.
     */
    const untilShown = async (s: RuntimeContractSubject, url: string, text: string) => {
      const t0 = performance.now();
      await expect
        .poll(
          async () => {
            const seen = await s.render(url, text).catch((e: Error) => `(no page: ${e.message})`);
            if (!seen.includes(text))
              console.warn(
                `${options.name}: ${Math.round(performance.now() - t0)} ms after the write, ${url} shows ${JSON.stringify(seen.slice(0, 200))}, not ${text}`,
              );
            return seen;
          },
          { timeout: timeout / 3, interval: 250 },
        )
        .toContain(text);
    };

    test('vanilla project serves and renders', async () => {
      const { s, r, ready } = await start(VANILLA_PROJECT);
      expect(() => new URL(r.url)).not.toThrow();
      expect(ready).toEqual([r]);
      expect(await s.render(r.url, 'vanilla:one')).toContain('vanilla:one');
    });

    test('writeFile changes what renders', async () => {
      const { s, r } = await start(VANILLA_PROJECT);
      expect(await s.render(r.url, 'vanilla:one')).toContain('vanilla:one');
      await s.runtime.writeFile('src/message.js', "export const message = 'two';\n");
      await untilShown(s, r.url, 'vanilla:two');
      // A new file, imported by an edited one.
      await s.runtime.writeFile('src/extra/deep.js', "export const extra = 'deep';\n");
      await s.runtime.writeFile(
        'src/main.js',
        "import { extra } from './extra/deep.js';\ndocument.querySelector('#app').textContent = 'vanilla:' + extra;\n",
      );
      await untilShown(s, r.url, 'vanilla:deep');
    });

    test('react project with JSX, TSX, CSS and react renders', async () => {
      const { s, r } = await start(REACT_PROJECT);
      expect(await s.render(r.url, 'react:contract:42')).toContain('react:contract:42');
    });

    test('a broken module reports an error', async () => {
      const { s, r } = await start(VANILLA_PROJECT);
      const errors: Error[] = [];
      s.runtime.on('error', (e) => errors.push(e));
      await s.runtime.writeFile('src/message.js', 'export const message = ;\n');
      await expect
        .poll(
          async () => {
            await s.render(r.url, 'never-there').catch(() => '');
            return errors.length;
          },
          { timeout: timeout / 2, interval: 500 },
        )
        .toBeGreaterThan(0);
      expect(errors[0]).toBeInstanceOf(Error);
      // Fixing the file brings the preview back.
      await s.runtime.writeFile('src/message.js', "export const message = 'fixed';\n");
      await untilShown(s, r.url, 'vanilla:fixed');
    });

    test('bad paths are rejected', async () => {
      const s = await make();
      await expect(s.runtime.mount({ '../escape.js': 'x' })).rejects.toBeInstanceOf(InvalidInputError);
      await s.runtime.mount(VANILLA_PROJECT);
      await expect(s.runtime.writeFile('/etc/passwd', 'x')).rejects.toBeInstanceOf(InvalidInputError);
      await expect(s.runtime.writeFile('a/../../b', 'x')).rejects.toBeInstanceOf(InvalidInputError);
      await expect(s.runtime.writeFile('node_modules/x/index.js', 'x')).rejects.toBeInstanceOf(
        InvalidInputError,
      );
    });

    test('teardown is repeat-safe', async () => {
      const { s, r } = await start(VANILLA_PROJECT);
      expect(await s.render(r.url, 'vanilla:one')).toContain('vanilla:one');
      await s.runtime.teardown();
      await s.runtime.teardown();
      expect(await s.render(r.url, 'vanilla:one').catch(() => 'gone')).not.toContain('vanilla:one');
      await expect(s.runtime.writeFile('src/a.js', 'x')).rejects.toThrow();
    });
  });
}

/**
 * For runtimes whose dev server Node can reach (process, the WebContainer fake): starts the vanilla
 * project and asserts that a request made right after each `writeFile` resolves gets what was
 * written. A dev server that learns of writes only from its file watcher fails this: a request
 * that comes before the watcher's event caches the file, and chokidar then misses the next writes
 * (the preview shows an old version until some later edit).
 */
export async function expectEveryWriteServed(runtime: PreviewRuntime): Promise<void> {
  await runtime.mount(VANILLA_PROJECT);
  await runtime.install();
  const { url } = await runtime.run();
  const get = async (path: string) => (await fetch(new URL(path, url))).text();
  await get('/');
  await get('/src/main.js');
  for (const m of ['a', 'b', 'c', 'd', 'e']) {
    await runtime.writeFile('src/message.js', `export const message = '${m}';\n`);
    expect(await get('/src/message.js')).toContain(`message = '${m}'`);
  }
}
