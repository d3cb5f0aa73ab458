import { ConfigError, PreviewError, type ProjectFiles } from '@preview/tiers';
import type { BootOptions, FileSystemAPI, FileSystemTree, WebContainer } from '@webcontainer/api';
import { checkPath, decodeFiles, Emitter } from './files.ts';
import {
  type PreviewRuntime,
  type RuntimeCallOptions,
  type RuntimeEvents,
  RuntimeUnavailableError,
  type ServerReady,
} from './types.ts';

/**
 * The part of `@webcontainer/api`'s `WebContainer` this runtime uses, typed from the package's own
 * declarations (so a fake that implements it is checked against the published typings).
 */
export interface WebContainerLike {
  fs: Pick<FileSystemAPI, 'writeFile' | 'mkdir'>;
  spawn: WebContainer['spawn'];
  mount: WebContainer['mount'];
  on: WebContainer['on'];
  teardown: WebContainer['teardown'];
}
/** Compile-time proof that the real class satisfies `WebContainerLike` (fails to build if the typings drift). */
export const asWebContainerLike = (wc: WebContainer): WebContainerLike => wc;

export interface WebContainerRuntimeOptions {
  /**
   * Boots the container with the resolved boot options. @default `WebContainer.boot` from
   * `@webcontainer/api`
   */
  boot?: (options: BootOptions) => Promise<WebContainerLike>;
  /**
   * Merged over the runtime's own: `coep: 'credentialless'`, `workdirName: 'project'` and
   * `forwardPreviewErrors: 'exceptions-only'` (without it, StackBlitz's preview script reports
   * no uncaught error of the page, and `error` never fires for one; console errors are not
   * errors of the preview).
   */
  bootOptions?: BootOptions;
  /**
   * Boot must finish within this (default 15 s); else RuntimeUnavailableError, and the preview goes
   * back to the router for a server tier. StackBlitz's hosted iframe can be blocked, slow or offline.
   */
  bootTimeoutMs?: number;
  installCommand?: [string, string[]];
  devCommand?: [string, string[]];
  /** How long `run` waits for `server-ready` (default 120 s). */
  startTimeoutMs?: number;
}

/** Converts flat project files into WebContainer's nested FileSystemTree. */
export function toFileSystemTree(files: Map<string, string | Uint8Array>): FileSystemTree {
  const root: FileSystemTree = {};
  for (const [path, contents] of files) {
    const parts = path.split('/');
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      const node = dir[part];
      if (node && 'directory' in node) dir = node.directory;
      else {
        const next: FileSystemTree = {};
        dir[part] = { directory: next };
        dir = next;
      }
    }
    dir[parts.at(-1)!] = { file: { contents } };
  }
  return root;
}

/**
 * Runs the project in a WebContainer (StackBlitz's in-browser Node): `npm install`, then the dev
 * server; `server-ready` gives the URL to frame. Needs a cross-origin-isolated page and, for
 * commercial use, a StackBlitz licence.
 *
 * @example
 * const rt = new WebContainerRuntime({ bootTimeoutMs: 10_000 });
 * try { await rt.mount(files); } catch (e) { if (isRuntimeUnavailable(e)) askRouterForServerTier(); }
 */
export class WebContainerRuntime implements PreviewRuntime {
  readonly kind = 'webcontainer' as const;
  readonly #o: WebContainerRuntimeOptions;
  readonly #events = new Emitter<RuntimeEvents>();
  #booting: Promise<WebContainerLike> | undefined;
  #wc: WebContainerLike | undefined;
  #ready: ServerReady | undefined;
  #offs: Array<() => void> = [];
  #log: string[] = [];
  #tornDown = false;

  constructor(options: WebContainerRuntimeOptions = {}) {
    if (options.bootTimeoutMs !== undefined && !(options.bootTimeoutMs > 0))
      throw new ConfigError('invalid_config', 'WebContainerRuntime: option "bootTimeoutMs" must be > 0');
    this.#o = options;
  }

  on<E extends keyof RuntimeEvents>(event: E, listener: (p: RuntimeEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  #alive() {
    if (this.#tornDown) throw new PreviewError('runtime_torn_down', 'the runtime was torn down');
  }

  /** Boots once, within the boot timeout; any failure or a timeout is RuntimeUnavailable. */
  #container(signal?: AbortSignal): Promise<WebContainerLike> {
    this.#booting ??= (async () => {
      const timeoutMs = this.#o.bootTimeoutMs ?? 15_000;
      const bootOptions: BootOptions = {
        coep: 'credentialless',
        workdirName: 'project',
        forwardPreviewErrors: 'exceptions-only',
        ...this.#o.bootOptions,
      };
      const boot =
        this.#o.boot ??
        (async (options: BootOptions) => {
          const { WebContainer } = await import('@webcontainer/api');
          return WebContainer.boot(options);
        });
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const wc = await Promise.race([
          Promise.resolve(bootOptions).then(boot),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  new RuntimeUnavailableError(
                    'runtime_unavailable',
                    `WebContainer did not boot within ${timeoutMs} ms`,
                    { runtime: 'webcontainer' },
                  ),
                ),
              timeoutMs,
            );
          }),
          ...(signal
            ? [
                new Promise<never>((_, reject) =>
                  signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
                ),
              ]
            : []),
        ]);
        this.#wc = wc;
        this.#offs.push(
          wc.on('error', (e) =>
            this.#events.emit('error', new PreviewError('webcontainer_error', e.message)),
          ),
          // Uncaught errors in the preview page come back as preview messages.
          wc.on('preview-message', (m) => {
            const text =
              'message' in m && typeof m.message === 'string'
                ? m.message
                : 'args' in m && Array.isArray(m.args)
                  ? m.args.map(String).join(' ')
                  : m.type;
            this.#events.emit('error', new PreviewError('preview_error', text));
          }),
          wc.on('server-ready', (port, url) => {
            this.#ready = { url, port };
            this.#events.emit('server-ready', this.#ready);
          }),
        );
        if (this.#tornDown) wc.teardown();
        return wc;
      } catch (e) {
        this.#booting = undefined;
        if (signal?.aborted) throw e;
        if (e instanceof RuntimeUnavailableError) throw e;
        throw new RuntimeUnavailableError(
          'runtime_unavailable',
          `WebContainer cannot boot here: ${(e as Error).message}`,
          { runtime: 'webcontainer', cause: e },
        );
      } finally {
        clearTimeout(timer);
      }
    })();
    return this.#booting;
  }

  async mount(files: ProjectFiles, options: RuntimeCallOptions = {}): Promise<void> {
    this.#alive();
    const tree = toFileSystemTree(decodeFiles(files));
    const wc = await this.#container(options.signal);
    await wc.mount(tree);
  }

  async #exec(command: [string, string[]], what: string): Promise<void> {
    const wc = await this.#container();
    const p = await wc.spawn(command[0], command[1]);
    void p.output.pipeTo(new WritableStream({ write: (chunk) => this.#keep(chunk) })).catch(() => {});
    const code = await p.exit;
    if (code !== 0)
      throw new PreviewError(
        `${what}_failed`,
        `${command.join(' ')} exited with ${code}: ${this.#log.slice(-20).join('')}`,
      );
  }

  #keep(chunk: string) {
    this.#log.push(chunk);
    if (this.#log.length > 500) this.#log.splice(0, this.#log.length - 500);
  }

  async install(options: RuntimeCallOptions = {}): Promise<void> {
    this.#alive();
    await this.#container(options.signal);
    await this.#exec(this.#o.installCommand ?? ['npm', ['install']], 'install');
  }

  async run(options: RuntimeCallOptions = {}): Promise<ServerReady> {
    this.#alive();
    if (this.#ready) return this.#ready;
    const wc = await this.#container(options.signal);
    const ready = new Promise<ServerReady>((resolve, reject) => {
      const off = this.#events.on('server-ready', (e) => {
        off();
        clearTimeout(timer);
        resolve(e);
      });
      const timer = setTimeout(() => {
        off();
        reject(
          new PreviewError('start_timeout', `no server-ready within ${this.#o.startTimeoutMs ?? 120_000} ms`),
        );
      }, this.#o.startTimeoutMs ?? 120_000);
    });
    const [cmd, args] = this.#o.devCommand ?? ['npm', ['run', 'dev']];
    const p = await wc.spawn(cmd, args);
    void p.output.pipeTo(new WritableStream({ write: (chunk) => this.#keep(chunk) })).catch(() => {});
    void p.exit.then((code) => {
      if (!this.#tornDown)
        this.#events.emit(
          'error',
          new PreviewError('dev_server_exited', `${cmd} ${args.join(' ')} exited with ${code}`),
        );
    });
    return await ready;
  }

  async writeFile(path: string, content: string | Uint8Array): Promise<void> {
    this.#alive();
    checkPath(path);
    const wc = await this.#container();
    if (path.includes('/')) await wc.fs.mkdir(path.slice(0, path.lastIndexOf('/')), { recursive: true });
    await wc.fs.writeFile(path, content);
  }

  async teardown(): Promise<void> {
    if (this.#tornDown) return;
    this.#tornDown = true;
    for (const off of this.#offs.splice(0)) off();
    this.#wc?.teardown();
    this.#wc = undefined;
    this.#ready = undefined;
    this.#events.clear();
  }
}
