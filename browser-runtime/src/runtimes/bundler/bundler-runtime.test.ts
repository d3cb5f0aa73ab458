import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, renderText } from '@preview/testkit';
import { InvalidInputError, PreviewError, type ProjectFiles } from '@preview/tiers';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRuntimeContract } from '../contract.case.test.ts';
import { Emitter } from '../files.ts';
import {
  type PreviewRuntime,
  type RuntimeEvents,
  RuntimeUnavailableError,
  type ServerReady,
} from '../types.ts';
import { buildBundlerAssets } from './assets.ts';

/**
 * BundlerRuntime in real Chromium: a local server hosts a test page built with esbuild from the
 * runtime's source, the worker, the service worker, esbuild.wasm and the vendor copy of React.
 * Node drives the runtime through the page and renders previews in other tabs.
 */
const here = dirname(fileURLToPath(import.meta.url));
let server: Server;
let origin: string;
let chrome: Awaited<ReturnType<typeof launchChromium>>;
let vendor: Record<string, string>;
let n = 0;

beforeAll(async () => {
  const esbuild = await import('esbuild');
  const { files, importMap } = await buildBundlerAssets();
  vendor = importMap;
  const harness = await esbuild.build({
    entryPoints: [join(here, '../../../test/bundler-harness.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'silent',
  });
  files.set('harness.js', harness.outputFiles[0]!.text);
  files.set(
    'harness.html',
    '<!doctype html><html><body><script type="module" src="/harness.js"></script></body></html>',
  );
  const types: Record<string, string> = {
    js: 'text/javascript',
    html: 'text/html',
    wasm: 'application/wasm',
    json: 'application/json',
  };
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname.slice(1);
    const body = files.get(path);
    if (body === undefined) return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-type': types[path.split('.').pop() ?? ''] ?? 'application/octet-stream' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  // 127.0.0.1 is a secure context, as service workers need.
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  chrome = await launchChromium();
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await new Promise((r) => server?.close(r));
});

async function harnessPage(): Promise<{
  page: Page;
  events: Emitter<Record<string, Record<string, unknown>>>;
}> {
  const page = await chrome.context.newPage();
  const events = new Emitter<Record<string, Record<string, unknown>>>();
  await page.exposeFunction('__emit', (id: string, event: string, payload: Record<string, unknown>) =>
    events.emit(`${id}:${event}`, payload),
  );
  await page.goto(`${origin}/harness.html`);
  await page.waitForFunction(() => '__bundler' in window);
  return { page, events };
}

/** A PreviewRuntime whose calls run in the harness page. */
class PageRuntime implements PreviewRuntime {
  readonly kind = 'bundler' as const;
  readonly #events = new Emitter<RuntimeEvents>();
  constructor(
    readonly page: Page,
    readonly previewId: string,
    emitter: Emitter<Record<string, Record<string, unknown>>>,
  ) {
    emitter.on(`${previewId}:server-ready`, (p) =>
      this.#events.emit('server-ready', p as unknown as ServerReady),
    );
    emitter.on(`${previewId}:error`, (p) =>
      this.#events.emit('error', new PreviewError('build_failed', String(p['message']))),
    );
  }
  async #call<T>(method: string, ...args: unknown[]): Promise<T> {
    const r = await this.page.evaluate(
      ([id, m, a]) =>
        (
          window as unknown as { __bundler: { call(id: string, m: string, a: unknown[]): Promise<unknown> } }
        ).__bundler.call(id as string, m as string, a as unknown[]),
      [this.previewId, method, args] as const,
    );
    const res = r as { ok: boolean; value?: T; error?: { name: string; code: string; message: string } };
    if (res.ok) return res.value as T;
    const e = res.error!;
    if (e.name === 'InvalidInputError') throw new InvalidInputError(e.code, e.message);
    if (e.name === 'RuntimeUnavailableError')
      throw new RuntimeUnavailableError('runtime_unavailable', e.message, { runtime: 'bundler' });
    throw new PreviewError(e.code ?? 'error', e.message);
  }
  mount(files: ProjectFiles) {
    return this.#call<void>('mount', files);
  }
  install() {
    return this.#call<void>('install');
  }
  run() {
    return this.#call<ServerReady>('run');
  }
  writeFile(path: string, content: string | Uint8Array) {
    return this.#call<void>('writeFile', path, content);
  }
  on<E extends keyof RuntimeEvents>(event: E, listener: (p: RuntimeEvents[E]) => void) {
    return this.#events.on(event, listener);
  }
  teardown() {
    return this.#call<void>('teardown');
  }
}

const render = (url: string, waitFor: string) => renderText(chrome.context, url, waitFor);

async function createRuntime(options: { bootTimeoutMs?: number; workerUrl?: string } = {}) {
  const { page, events } = await harnessPage();
  const previewId = `b${Date.now().toString(36)}${n++}`;
  await page.evaluate(
    ([id, v, t, w]) =>
      (window as unknown as { __bundler: { create(...a: unknown[]): void } }).__bundler.create(id, v, t, w),
    [previewId, vendor, options.bootTimeoutMs, options.workerUrl] as const,
  );
  return { runtime: new PageRuntime(page, previewId, events), page };
}

runRuntimeContract({
  name: 'bundler (esbuild-wasm + service worker, in Chromium)',
  create: async () => {
    const { runtime, page } = await createRuntime();
    return { runtime, render, cleanup: () => page.close() };
  },
});

describe('BundlerRuntime specifics', () => {
  it('fails with RuntimeUnavailable when its worker cannot start', async () => {
    const { runtime, page } = await createRuntime({ bootTimeoutMs: 3_000, workerUrl: '/missing-worker.js' });
    try {
      await runtime.mount({ 'index.html': '<p>x</p>' });
      await expect(runtime.install()).rejects.toBeInstanceOf(RuntimeUnavailableError);
    } finally {
      await page.close();
    }
  });

  it('names a package it has no offline copy of', async () => {
    const { runtime, page } = await createRuntime();
    try {
      const errors: Error[] = [];
      runtime.on('error', (e) => errors.push(e));
      await runtime.mount({
        'index.html': '<div id="app"></div><script type="module" src="/main.js"></script>',
        'main.js': "import _ from 'lodash';\nconsole.log(_);\n",
      });
      await runtime.install();
      await expect(runtime.run()).rejects.toThrow(/package "lodash" is not in the preview.s import map/);
      expect(errors.map((e) => e.message).join()).toMatch(/lodash/);
    } finally {
      await page.close();
    }
  });
});
