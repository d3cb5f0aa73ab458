import { ConfigError, PreviewError, type ProjectFiles, TimeoutError } from '@preview/tiers';
import { Emitter } from '../files.ts';
import {
  type PreviewRuntime,
  type RuntimeCallOptions,
  type RuntimeEvents,
  RuntimeUnavailableError,
  type ServerReady,
} from '../types.ts';
import { BuildFailedError } from './bundler-runtime.ts';
import {
  HOST_CONNECT,
  HOST_LOADED,
  HOST_PAGE,
  type HostAnswer,
  type HostCall,
  type HostError,
  type HostMessage,
  toHostError,
} from './host-protocol.ts';

/** Calls without their id (each gets one when sent). */
type HostCallBody = HostCall extends infer C ? (C extends HostCall ? Omit<C, 'id'> : never) : never;

export interface RemoteBundlerRuntimeOptions {
  /** Names the preview's scope on the runtime origin: `<hostUrl origin>/__preview-bundler/<previewId>/`. */
  previewId: string;
  /**
   * The runtime origin's base URL, e.g. `https://bundler.preview.example.com/` (the router's
   * `GET /v1/runtime-host`). Its `host.html` runs the bundler; it must be another origin than this
   * page's, so the app it serves cannot reach this page's storage.
   */
  hostUrl: string;
  /** The offline import map (see BundlerRuntimeOptions.vendor); URLs resolve on the runtime origin. */
  vendor?: Record<string, string>;
  /** The preview's import map from the router, asked by the host through this page (see BundlerRuntimeOptions.importMap). */
  importMap?: () => Promise<{ imports: Record<string, string> }>;
  /** How long the host page, its service worker and esbuild-wasm may take to start. @default 20000 */
  bootTimeoutMs?: number;
  /**
   * How long `teardown` waits for the host to clear the preview's cache, ms; then the host frame
   * is removed anyway (teardown never hangs on a host that does not answer). @default 5000
   */
  teardownTimeoutMs?: number;
}

/**
 * The bundler runtime on its own origin: a hidden iframe on the runtime host (`host.html` of
 * `bundler.<PREVIEW_DOMAIN>`, served by the router) runs BundlerRuntime there, and this page drives
 * it over a MessagePort. The preview URL it reports is on the runtime origin, so the bundled app,
 * which is untrusted code, shares nothing with the editor's origin: not its localStorage (tokens),
 * cookies or service workers. Same interface as BundlerRuntime; errors keep their codes
 * (`runtime_unavailable` → RuntimeUnavailableError, so `mountPreview` falls back to a server tier).
 *
 * @example
 * const rt = new RemoteBundlerRuntime({ previewId, hostUrl: await client.runtimeHost() });
 * await rt.mount(files); await rt.install(); const { url } = await rt.run(); iframe.src = url;
 */
export class RemoteBundlerRuntime implements PreviewRuntime {
  readonly kind = 'bundler' as const;
  readonly #o: RemoteBundlerRuntimeOptions;
  readonly #host: URL;
  readonly #events = new Emitter<RuntimeEvents>();
  #frame: HTMLIFrameElement | undefined;
  #port: MessagePort | undefined;
  #connecting: Promise<MessagePort> | undefined;
  #nextId = 1;
  readonly #pending = new Map<number, (m: HostMessage) => void>();
  #tornDown = false;

  /** @throws ConfigError `invalid_config` for a bad previewId or a hostUrl that is not http(s) */
  constructor(options: RemoteBundlerRuntimeOptions) {
    if (!options || !/^[a-zA-Z0-9_-]{1,64}$/.test(options.previewId ?? ''))
      throw new ConfigError(
        'invalid_config',
        'RemoteBundlerRuntime: option "previewId" must be 1-64 of [a-zA-Z0-9_-]',
      );
    let host: URL;
    try {
      host = new URL(options.hostUrl);
    } catch {
      throw new ConfigError(
        'invalid_config',
        'RemoteBundlerRuntime: option "hostUrl" must be an absolute URL',
      );
    }
    if (host.protocol !== 'https:' && host.protocol !== 'http:')
      throw new ConfigError('invalid_config', 'RemoteBundlerRuntime: option "hostUrl" must be http(s)');
    this.#o = options;
    this.#host = host;
  }

  on<E extends keyof RuntimeEvents>(event: E, listener: (p: RuntimeEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  async mount(files: ProjectFiles, options: RuntimeCallOptions = {}): Promise<void> {
    await this.#call({ op: 'mount', files }, options.signal);
  }

  /** Loads the host page and starts the bundler there; RuntimeUnavailableError when it cannot. */
  async install(options: RuntimeCallOptions = {}): Promise<void> {
    await this.#call({ op: 'install' }, options.signal);
  }

  async run(options: RuntimeCallOptions = {}): Promise<ServerReady> {
    const ready = (await this.#call({ op: 'run' }, options.signal)) as ServerReady;
    return ready;
  }

  async writeFile(path: string, content: string | Uint8Array): Promise<void> {
    await this.#call({ op: 'writeFile', path, content });
  }

  async teardown(): Promise<void> {
    if (this.#tornDown) return;
    // The host clears the preview's cache; a host that does not answer in time goes with its frame.
    if (this.#port) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => {
        timer = setTimeout(r, this.#o.teardownTimeoutMs ?? 5_000);
      });
      await Promise.race([this.#call({ op: 'teardown' }).catch(() => {}), late]);
      clearTimeout(timer);
    }
    this.#tornDown = true;
    for (const [id, done] of this.#pending)
      done({
        id,
        ok: false,
        error: { name: 'PreviewError', code: 'runtime_torn_down', message: 'torn down' },
      });
    this.#pending.clear();
    this.#port?.close();
    this.#frame?.remove();
    this.#events.clear();
  }

  async #call(body: HostCallBody, signal?: AbortSignal): Promise<unknown> {
    if (this.#tornDown) throw new PreviewError('runtime_torn_down', 'the runtime was torn down');
    this.#connecting ??= this.#connect();
    const port = await this.#connecting;
    const id = this.#nextId++;
    const answer = new Promise<HostMessage>((resolve) => this.#pending.set(id, resolve));
    port.postMessage({ ...body, id } as HostCall);
    const m = await (signal ? raceSignal(answer, signal) : answer);
    if ('ok' in m && m.ok) return m.value;
    throw fromHostError('error' in m ? m.error : toHostError(new Error('unexpected answer')));
  }

  /** Frames the host page, waits for it to listen, hands it a port and starts its runtime. */
  async #connect(): Promise<MessagePort> {
    const timeoutMs = this.#o.bootTimeoutMs ?? 20_000;
    const frame = document.createElement('iframe');
    frame.setAttribute('aria-hidden', 'true');
    frame.setAttribute('title', `preview runtime host ${this.#o.previewId}`);
    frame.style.display = 'none';
    this.#frame = frame;
    const loaded = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the runtime host ${this.#host.origin} did not load in ${timeoutMs} ms`)),
        timeoutMs,
      );
      const onMessage = (e: MessageEvent<{ type?: string }>) => {
        if (
          e.source !== frame.contentWindow ||
          e.origin !== this.#host.origin ||
          e.data?.type !== HOST_LOADED
        )
          return;
        clearTimeout(timer);
        window.removeEventListener('message', onMessage);
        resolve();
      };
      window.addEventListener('message', onMessage);
    });
    frame.src = new URL(HOST_PAGE, this.#host).href;
    document.body.appendChild(frame);
    try {
      await loaded;
    } catch (e) {
      frame.remove();
      throw new RuntimeUnavailableError('runtime_unavailable', (e as Error).message, {
        runtime: 'bundler',
        cause: e,
      });
    }
    const channel = new MessageChannel();
    const port = channel.port1;
    port.onmessage = (e: MessageEvent<HostMessage>) => this.#onMessage(e.data);
    frame.contentWindow!.postMessage({ type: HOST_CONNECT }, this.#host.origin, [channel.port2]);
    this.#port = port;
    const id = this.#nextId++;
    const started = new Promise<HostMessage>((resolve) => this.#pending.set(id, resolve));
    port.postMessage({
      id,
      op: 'start',
      options: {
        previewId: this.#o.previewId,
        importMap: Boolean(this.#o.importMap),
        ...(this.#o.vendor ? { vendor: this.#o.vendor } : {}),
        ...(this.#o.bootTimeoutMs ? { bootTimeoutMs: this.#o.bootTimeoutMs } : {}),
      },
    } satisfies HostCall);
    const m = await started;
    if ('ok' in m && !m.ok) throw fromHostError(m.error);
    return port;
  }

  #onMessage(m: HostMessage): void {
    if ('event' in m) {
      const payload = m.event === 'error' ? fromHostError(m.payload as HostError) : m.payload;
      this.#events.emit(m.event as keyof RuntimeEvents, payload as never);
      return;
    }
    if ('ask' in m) {
      const answer = (a: HostAnswer) => this.#port?.postMessage(a);
      const source = this.#o.importMap;
      if (!source) {
        answer({
          ask: m.ask,
          ok: false,
          error: toHostError(new PreviewError('no_import_map', 'no import map source')),
        });
        return;
      }
      source().then(
        (value) => answer({ ask: m.ask, ok: true, value }),
        (e: unknown) => answer({ ask: m.ask, ok: false, error: toHostError(e) }),
      );
      return;
    }
    this.#pending.get(m.id)?.(m);
    this.#pending.delete(m.id);
  }
}

/**
 * A posted error as the class the runtime threw (RuntimeUnavailableError keeps its class: fallback;
 * BuildFailedError its problems: an editor jumps to them).
 */
function fromHostError(e: HostError): Error {
  if (e.code === 'runtime_unavailable')
    return new RuntimeUnavailableError('runtime_unavailable', e.message, { runtime: 'bundler' });
  if (e.code === 'build_failed' && e.problems)
    return new BuildFailedError('build_failed', e.message, { problems: e.problems });
  const err = new PreviewError(e.code, e.message);
  err.name = e.name;
  return err;
}

function raceSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason ?? new TimeoutError('timeout', 'aborted'));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new TimeoutError('timeout', 'aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
