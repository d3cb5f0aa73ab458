import { type ProjectFiles, TierUnavailableError } from '@preview/tiers';

/**
 * One interface for every way the editor can run a preview locally: WebContainers, the offline
 * esbuild-wasm bundler, and (for tests and Node tooling) a child process running Vite.
 *
 * @example
 * const rt: PreviewRuntime = new BundlerRuntime({ previewId });
 * rt.on('server-ready', ({ url }) => (iframe.src = url));
 * await rt.mount(files); await rt.install(); await rt.run();
 * await rt.writeFile('src/App.tsx', source);
 * await rt.teardown();
 */
export interface PreviewRuntime {
  readonly kind: RuntimeKind;
  /** Puts the project's files in place (replacing none that are not named). */
  mount(files: ProjectFiles, options?: RuntimeCallOptions): Promise<void>;
  /** Makes the project's dependencies available (npm install, a vendor copy, a link). */
  install(options?: RuntimeCallOptions): Promise<void>;
  /** Starts serving; resolves (and emits `server-ready`) with the URL to show. */
  run(options?: RuntimeCallOptions): Promise<ServerReady>;
  /** Writes one file; the running preview picks it up (HMR or reload). */
  writeFile(path: string, content: string | Uint8Array): Promise<void>;
  on<E extends keyof RuntimeEvents>(event: E, listener: (payload: RuntimeEvents[E]) => void): () => void;
  /** Stops everything and frees resources. Repeat-safe. */
  teardown(): Promise<void>;
}

export type RuntimeKind = 'webcontainer' | 'bundler' | 'process';

export interface ServerReady {
  url: string;
  port?: number;
}

export interface RuntimeEvents {
  'server-ready': ServerReady;
  error: Error;
  /**
   * A build after an edit reached the page (the bundler runtime): `hot` modules replaced in place
   * (React Fast Refresh, CSS), `reload` the page reloaded, `none` nothing it runs changed. A build
   * error shown before is gone from the page once this arrives.
   */
  updated: RuntimeUpdate;
}

/** One published build (the `updated` event). */
export interface RuntimeUpdate {
  /** The build's number (1 is the first). */
  build: number;
  kind: 'hot' | 'reload' | 'none';
  /** Project paths of the modules whose code changed. */
  modules: string[];
  /** Modules esbuild compiled for it (the others were kept from earlier builds). */
  compiled: number;
  /** The bundler worker's time for the build, ms. */
  buildMs: number;
  /** writeFile → the build published to the page, ms. */
  ms: number;
}

export interface RuntimeCallOptions {
  signal?: AbortSignal;
}

/**
 * The runtime cannot run here (WebContainers did not boot in time, no cross-origin isolation, no
 * service worker). `mountPreview` answers it by asking the router for a server tier.
 */
export class RuntimeUnavailableError extends TierUnavailableError {
  readonly runtime: RuntimeKind;
  /** @example new RuntimeUnavailableError('runtime_unavailable', 'no cross-origin isolation', { runtime: 'webcontainer' }) */
  constructor(
    code: 'runtime_unavailable',
    message: string,
    options: { runtime: RuntimeKind; cause?: unknown },
  ) {
    super(code, message, { tier: 'browser', cause: options.cause });
    this.name = 'RuntimeUnavailableError';
    this.runtime = options.runtime;
  }
}

export const isRuntimeUnavailable = (e: unknown): e is RuntimeUnavailableError =>
  e instanceof Error && (e as { code?: string }).code === 'runtime_unavailable';
