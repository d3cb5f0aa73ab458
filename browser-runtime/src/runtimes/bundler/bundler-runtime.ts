import { ConfigError, PreviewError, type ProjectFiles, TimeoutError } from '@preview/tiers';
import { checkPath, decodeFiles, Emitter } from '../files.ts';
import {
  type PreviewRuntime,
  type RuntimeCallOptions,
  type RuntimeEvents,
  RuntimeUnavailableError,
  type ServerReady,
} from '../types.ts';
import type { BuildProblem } from './build.ts';
import { BUNDLER_SCOPE, cacheName, type WorkerRequest, type WorkerResponse } from './protocol.ts';

/**
 * The project could not be built (a syntax error, an import that resolves to nothing): `problems`
 * lists each one with its file, 1-based line, 0-based column and message (esbuild's, or the Vue or
 * Svelte compiler's); `file`, `line`, `column` are the first one's, so an editor can jump to it.
 * The preview frame shows the same problems in its error overlay until a build succeeds.
 */
export class BuildFailedError extends PreviewError {
  readonly problems: BuildProblem[];
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly column: number | undefined;
  /** @example new BuildFailedError('build_failed', 'src/App.tsx:3:7: Expected ")"', { problems }) */
  constructor(code: 'build_failed', message: string, options: { problems: BuildProblem[] }) {
    super(code, message);
    this.name = 'BuildFailedError';
    this.problems = options.problems;
    const first = options.problems.find((p) => p.file) ?? options.problems[0];
    this.file = first?.file;
    this.line = first?.line;
    this.column = first?.column;
  }
}

export interface BundlerRuntimeOptions {
  /** Names the preview's scope: `<origin>/__preview-bundler/<previewId>/`. */
  previewId: string;
  /** The built `worker.ts` (default `/preview-bundler-worker.js`). */
  workerUrl?: string;
  /** The built `service-worker.ts`, served at the origin's root so its scope covers the previews (default `/preview-sw.js`). */
  serviceWorkerUrl?: string;
  /** esbuild-wasm's `esbuild.wasm`, served by the host (default `/esbuild.wasm`). */
  wasmUrl?: string;
  /**
   * The offline import map (`vendor/importmap.json` of `buildBundlerAssets`: React only), used when
   * no `importMap` source is given. Packages not listed fail the build with a message naming them.
   * @default {}
   */
  vendor?: Record<string, string>;
  /**
   * The preview's import map from the router (`GET /v1/previews/:id/importmap`, e.g.
   * `() => client.importMap(previewId)`): every dependency of the project's package.json at the
   * version its range resolves to, served by the router's package cache (`/__pkg/...`, on this
   * page's origin). Asked before the first build and again before the build after each
   * `package.json` write. When given, it replaces `vendor` (one copy of each package per page).
   * A rejection with code `browser_incompatible` (a dependency cannot run in a browser) becomes
   * RuntimeUnavailableError naming the package, so `mountPreview` falls back to a server tier.
   */
  importMap?: () => Promise<{ imports: Record<string, string> }>;
  /** How long the service worker and esbuild-wasm may take to start (default 20 s) before RuntimeUnavailable. */
  bootTimeoutMs?: number;
  /**
   * The React Refresh runtime (`vendor/react-refresh.js` of `buildBundlerAssets`), for projects
   * whose import map has `react`: component modules are registered with it and an edit of one keeps
   * the components' state (React Fast Refresh); `false` turns it off (every edit reloads the page).
   * @default '/vendor/react-refresh.js'
   */
  refreshUrl?: string | false;
}

/**
 * Runs a frontend project in the tab without any server: esbuild-wasm bundles it in a Web Worker,
 * the result goes into Cache Storage, and a service worker serves it under the preview's scope.
 * Works offline and needs no licence. Edits rebuild and reload the preview.
 *
 * @example
 * const rt = new BundlerRuntime({ previewId, vendor: await (await fetch('/vendor/importmap.json')).json() });
 * rt.on('server-ready', ({ url }) => (iframe.src = url));
 * await rt.mount(files); await rt.install(); await rt.run();
 */
export class BundlerRuntime implements PreviewRuntime {
  readonly kind = 'bundler' as const;
  readonly #o: Required<Omit<BundlerRuntimeOptions, 'importMap'>> & Pick<BundlerRuntimeOptions, 'importMap'>;
  readonly #events = new Emitter<RuntimeEvents>();
  readonly #files = new Map<string, string | Uint8Array>();
  #worker: Worker | undefined;
  #nextId = 1;
  #pending = new Map<number, (r: WorkerResponse) => void>();
  #ready: ServerReady | undefined;
  #building: Promise<void> = Promise.resolve();
  #tornDown = false;
  #channel: BroadcastChannel | undefined;
  /** The build whose page is published (written into it, which says it on load); later hot builds keep it. */
  #published = 0;
  /** The last build's worker figures (`stats`). */
  #lastBuild: { compiled: number; buildMs: number } | undefined;
  /** The router's import map, asked while the bundler starts (`install`). */
  #importMapAsked: Promise<{ imports: Record<string, string> }> | undefined;
  #nextBuild = 1;
  /** The import map builds use: the router's (once asked) or `vendor`. */
  #imports: Record<string, string>;
  /** The router's import map is asked again before the next build (set by a package.json write). */
  #importMapStale = true;
  /** The problems of the last build when it failed (the overlay of a page that loads meanwhile). */
  #problems: BuildProblem[] | undefined;

  constructor(options: BundlerRuntimeOptions) {
    if (!options || !/^[a-zA-Z0-9_-]{1,64}$/.test(options.previewId ?? ''))
      throw new ConfigError(
        'invalid_config',
        'BundlerRuntime: option "previewId" must be 1-64 of [a-zA-Z0-9_-]',
      );
    this.#o = {
      workerUrl: '/preview-bundler-worker.js',
      serviceWorkerUrl: '/preview-sw.js',
      wasmUrl: '/esbuild.wasm',
      vendor: {},
      refreshUrl: '/vendor/react-refresh.js',
      bootTimeoutMs: 20_000,
      ...options,
    };
    this.#imports = this.#o.vendor;
  }

  /** The last published build's figures: modules esbuild compiled, the worker's build time (ms). */
  get lastBuild(): { compiled: number; buildMs: number } | undefined {
    return this.#lastBuild;
  }

  get scopeUrl(): string {
    return new URL(`${BUNDLER_SCOPE}${this.#o.previewId}/`, location.origin).href;
  }

  on<E extends keyof RuntimeEvents>(event: E, listener: (p: RuntimeEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  #alive() {
    if (this.#tornDown) throw new PreviewError('runtime_torn_down', 'the runtime was torn down');
  }

  async mount(files: ProjectFiles): Promise<void> {
    this.#alive();
    for (const [p, v] of decodeFiles(files)) this.#files.set(p, v);
  }

  /**
   * Starts the service worker and the bundler's worker (esbuild-wasm starts there in the background;
   * a build that must compile waits for it), and asks the router's import map meanwhile.
   * @throws RuntimeUnavailableError where they cannot run (a build throws it if esbuild-wasm cannot start)
   */
  async install(options: RuntimeCallOptions = {}): Promise<void> {
    this.#alive();
    if (this.#worker) return;
    if (
      typeof Worker === 'undefined' ||
      typeof navigator === 'undefined' ||
      !navigator.serviceWorker ||
      typeof caches === 'undefined'
    )
      throw new RuntimeUnavailableError(
        'runtime_unavailable',
        'this browser context has no Worker, service worker or Cache Storage (needs a secure context)',
        { runtime: 'bundler' },
      );
    // The router's import map is asked meanwhile (run's first build uses it).
    if (this.#o.importMap && this.#importMapStale && !this.#importMapAsked) {
      this.#importMapAsked = this.#o.importMap();
      this.#importMapAsked.catch(() => {}); // reported by the build that uses it
    }
    const deadline = AbortSignal.timeout(this.#o.bootTimeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    try {
      await withSignal(this.#registerServiceWorker(), signal);
      this.#worker = new Worker(this.#o.workerUrl, { type: 'module' });
      this.#worker.onmessage = (e: MessageEvent<WorkerResponse>) => {
        const done = this.#pending.get(e.data.id);
        this.#pending.delete(e.data.id);
        done?.(e.data);
      };
      this.#worker.onerror = (e) => {
        for (const [, done] of this.#pending)
          done({ type: 'failed', id: -1, errors: [`worker error: ${e.message}`] });
        this.#pending.clear();
      };
      const r = await withSignal(
        this.#call({
          type: 'init',
          id: 0,
          wasmUrl: new URL(this.#o.wasmUrl, location.href).href,
          previewId: this.#o.previewId,
          ...(this.#o.refreshUrl ? { refreshUrl: new URL(this.#o.refreshUrl, location.href).href } : {}),
        }),
        signal,
      );
      if (r.type !== 'ready') throw new Error(r.type === 'failed' ? r.errors.join('; ') : 'unexpected reply');
    } catch (e) {
      this.#worker?.terminate();
      this.#worker = undefined;
      if (options.signal?.aborted) throw options.signal.reason;
      throw new RuntimeUnavailableError(
        'runtime_unavailable',
        `bundler did not start: ${(e as Error).message}`,
        { runtime: 'bundler', cause: e },
      );
    }
  }

  async #registerServiceWorker(): Promise<void> {
    const reg = await navigator.serviceWorker.register(this.#o.serviceWorkerUrl, { scope: BUNDLER_SCOPE });
    const sw = reg.active ?? reg.waiting ?? reg.installing;
    if (!sw) throw new Error('no service worker after register()');
    if (sw.state === 'activated') return;
    await new Promise<void>((resolve, reject) => {
      sw.addEventListener('statechange', () => {
        if (sw.state === 'activated') resolve();
        if (sw.state === 'redundant') reject(new Error('service worker became redundant'));
      });
    });
  }

  #call(req: WorkerRequest): Promise<WorkerResponse> {
    const id = req.type === 'init' ? 0 : this.#nextId++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#worker!.postMessage({ ...req, id });
    });
  }

  /**
   * Asks the router for the import map when there is a source and package.json changed since.
   * @throws RuntimeUnavailableError when a dependency cannot run in a browser (`browser_incompatible`),
   *   PreviewError `import_map_failed` for any other failure
   */
  async #refreshImportMap(): Promise<void> {
    if (!this.#o.importMap || !this.#importMapStale) return;
    const asked = this.#importMapAsked;
    this.#importMapAsked = undefined;
    try {
      this.#imports = (await (asked ?? this.#o.importMap())).imports;
      this.#importMapStale = false;
    } catch (e) {
      const err = e as { code?: string; message?: string };
      if (err.code === 'browser_incompatible')
        throw new RuntimeUnavailableError(
          'runtime_unavailable',
          `a dependency cannot run in a browser: ${err.message}`,
          { runtime: 'bundler', cause: e },
        );
      throw new PreviewError('import_map_failed', `the router's import map: ${err.message ?? String(e)}`, {
        cause: e,
      });
    }
  }

  /**
   * Builds the current files and publishes the result: changed modules and assets, then the page;
   * then tells the page (hot update, reload, or that a shown error is gone). A failed build keeps the
   * last good one running, shows its problems in the page's overlay and emits BuildFailedError.
   */
  async #build(started = performance.now()): Promise<void> {
    try {
      await this.#refreshImportMap();
    } catch (e) {
      this.#events.emit('error', e as PreviewError);
      throw e;
    }
    const buildId = this.#nextBuild++;
    const r = await this.#call({
      type: 'build',
      id: 0,
      buildId,
      files: [...this.#files],
      vendor: this.#imports,
    });
    if (r.type === 'failed' && r.unavailable) {
      const err = new RuntimeUnavailableError(
        'runtime_unavailable',
        `bundler did not start: ${r.errors.join('; ')}`,
        {
          runtime: 'bundler',
        },
      );
      this.#events.emit('error', err);
      throw err;
    }
    if (r.type !== 'built') {
      const problems =
        r.type === 'failed'
          ? (r.problems ?? r.errors.map((message) => ({ message })))
          : [{ message: 'unexpected reply' }];
      const err = new BuildFailedError(
        'build_failed',
        r.type === 'failed' ? r.errors.join('\n') : 'unexpected reply',
        { problems },
      );
      this.#problems = problems;
      this.#channel?.postMessage({ type: 'error', errors: problems });
      this.#events.emit('error', err);
      throw err;
    }
    if (this.#tornDown) return;
    const cache = await caches.open(cacheName(this.#o.previewId));
    const base = this.scopeUrl;
    const put = (path: string, body: string | Uint8Array, type: string) =>
      cache.put(
        new Request(new URL(path, base).href),
        new Response(body as BodyInit, { headers: { 'content-type': type, ...PAGE_HEADERS } }),
      );
    const modules = r.modules.map(([p]) => p);
    const update = { type: 'update', build: buildId, modules, code: r.modules.map(([, c]) => c) };
    // A hot update carries its modules' code: the page need not wait for Cache Storage, unless a
    // module uses `import.meta` (the page then imports it from the service worker, after the puts).
    const early = !r.modules.some(([, c]) => c.includes('import.meta'));
    const hot = r.update === 'hot' && this.#published !== 0;
    if (hot && early) this.#channel?.postMessage(update);
    // The page last: a page that sees this build's HTML then loads this build's modules and assets.
    await Promise.all([
      ...r.modules.map(([p, code]) => put(`./__m/${p}`, code, 'text/javascript; charset=utf-8')),
      ...r.assets.map(([p, v]) => put(`./${p}`, v, contentType(p))),
    ]);
    // A hot update leaves the page as it is (a page loading now gets the new modules).
    const page = r.update === 'reload' || this.#published === 0;
    if (page)
      await Promise.all([
        put('./', r.html, 'text/html; charset=utf-8'),
        put('./index.html', r.html, 'text/html; charset=utf-8'),
      ]);
    if (page) this.#published = buildId;
    if (hot && !early) this.#channel?.postMessage(update);
    this.#problems = undefined;
    if (r.update === 'reload') this.#channel?.postMessage('reload');
    else if (r.update === 'none') this.#channel?.postMessage({ type: 'ok', build: buildId });
    else this.#channel?.postMessage({ type: 'published', build: buildId });
    if (buildId > 1)
      this.#events.emit('updated', {
        build: buildId,
        kind: r.update,
        modules,
        compiled: r.compiled,
        buildMs: r.ms,
        ms: performance.now() - started,
      });
    this.#lastBuild = { compiled: r.compiled, buildMs: r.ms };
  }

  async run(options: RuntimeCallOptions = {}): Promise<ServerReady> {
    this.#alive();
    if (this.#ready) return this.#ready;
    if (!this.#worker) await this.install(options);
    await this.#build();
    this.#channel = new BroadcastChannel(`preview-bundler:${this.#o.previewId}`);
    // A page that loaded an older build (its message came before it listened) is told again; one
    // that loads while the last build failed shows its problems.
    this.#channel.onmessage = (e: MessageEvent<{ type?: string; build?: number }>) => {
      if (e.data?.type !== 'hello') return;
      if (e.data.build !== this.#published) this.#channel?.postMessage('reload');
      else if (this.#problems) this.#channel?.postMessage({ type: 'error', errors: this.#problems });
    };
    this.#ready = { url: this.scopeUrl };
    this.#events.emit('server-ready', this.#ready);
    return this.#ready;
  }

  async writeFile(path: string, content: string | Uint8Array): Promise<void> {
    this.#alive();
    checkPath(path);
    this.#files.set(path, content);
    if (path === 'package.json') {
      this.#importMapStale = true;
      this.#importMapAsked = undefined;
    }
    if (!this.#ready) return;
    // One build at a time, in order; each sees every write made before it started.
    const started = performance.now();
    const next = this.#building.then(async () => {
      if (this.#tornDown) return;
      await this.#build(started);
    });
    this.#building = next.catch(() => {});
    await next.catch(() => {}); // reported through the 'error' event
  }

  async teardown(): Promise<void> {
    if (this.#tornDown) return;
    this.#tornDown = true;
    this.#worker?.terminate();
    this.#worker = undefined;
    for (const [, done] of this.#pending) done({ type: 'failed', id: -1, errors: ['torn down'] });
    this.#pending.clear();
    if (typeof caches !== 'undefined') await caches.delete(cacheName(this.#o.previewId));
    this.#channel?.postMessage('reload');
    this.#channel?.close();
    this.#events.clear();
    this.#ready = undefined;
  }
}

/**
 * Headers of everything a build publishes: never cached by the browser, and embeddable by a
 * cross-origin-isolated editor page (`COEP: credentialless` of its own, `CORP: cross-origin`), as
 * the router's server-tier previews are.
 */
const PAGE_HEADERS = {
  'cache-control': 'no-store',
  'cross-origin-embedder-policy': 'credentialless',
  'cross-origin-resource-policy': 'cross-origin',
} as const;

function contentType(path: string): string {
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase();
  const types: Record<string, string> = {
    svg: 'image/svg+xml',
    png: 'image/png',
    jpg: 'image/jpeg',
    jpeg: 'image/jpeg',
    gif: 'image/gif',
    webp: 'image/webp',
    ico: 'image/x-icon',
    woff: 'font/woff',
    woff2: 'font/woff2',
    txt: 'text/plain; charset=utf-8',
    html: 'text/html; charset=utf-8',
  };
  return (ext && types[ext]) || 'application/octet-stream';
}

function withSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason ?? new TimeoutError('timeout', 'aborted'));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new TimeoutError('timeout', 'aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
