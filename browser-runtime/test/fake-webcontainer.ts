import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type {
  BootOptions,
  CodeListener,
  ErrorListener,
  FileSystemTree,
  OpenListener,
  PortListener,
  PreviewMessageListener,
  ServerReadyListener,
  SpawnOptions,
  Unsubscribe,
  WebContainerProcess,
} from '@webcontainer/api';
import { ViteHost } from '../src/runtimes/vite-host.ts';
import type { WebContainerLike } from '../src/runtimes/webcontainer-runtime.ts';

/**
 * A fake of the `@webcontainer/api` surface WebContainerRuntime uses (Node only, for tests): StackBlitz's
 * hosted iframe cannot be reached here. It implements `WebContainerLike`, whose members are the
 * package's own declared types, so a signature that drifts from the published typings fails to build.
 * Its "container" is a temporary directory on the host: `mount` writes the FileSystemTree there,
 * `npm install` links the repo's node_modules (offline), `npm run dev` runs Vite and fires
 * `port` and `server-ready` as WebContainer does. `calls` records every API call. With
 * `forwardPreviewErrors` booted, its pages carry a stand-in for StackBlitz's preview script: uncaught
 * exceptions and unhandled rejections (and, for `true`, console errors) of a page come back as
 * `preview-message` events, as the published `PreviewMessage` types describe them.
 */

type Listener =
  | PortListener
  | ServerReadyListener
  | PreviewMessageListener
  | ErrorListener
  | OpenListener
  | CodeListener;

export class FakeWebContainer implements WebContainerLike {
  readonly calls: string[] = [];
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #children = new Set<ChildProcess>();
  readonly #vites = new Set<ViteHost>();
  #dir: Promise<string> = mkdtemp(join(tmpdir(), 'fake-webcontainer-'));
  #tornDown = false;
  #previewMessages: Promise<{ server: Server; url: string }> | undefined;

  /**
   * @param options.nodeModules what `npm install` links into the project (the image's installed packages).
   * @param boot the options it was booted with (`forwardPreviewErrors` is honoured).
   */
  constructor(
    readonly options: { nodeModules: string },
    readonly boot: BootOptions = {},
  ) {}

  /** A `boot` for `WebContainerRuntime` whose containers link `nodeModules` on `npm install`. */
  static booter(options: { nodeModules: string }): (boot?: BootOptions) => Promise<FakeWebContainer> {
    return async (boot) => new FakeWebContainer(options, boot);
  }

  /**
   * The preview script's stand-in, or `undefined` when errors are not forwarded: it sends each of
   * the page's errors to a loopback listener of the fake's, which emits `preview-message`.
   */
  async #previewScript(): Promise<string | undefined> {
    const forward = this.boot.forwardPreviewErrors;
    if (!forward) return undefined;
    this.#previewMessages ??= new Promise((resolve) => {
      const server = createHttpServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => {
          body += c.toString();
        });
        req.on('end', () => {
          res.writeHead(204, { 'access-control-allow-origin': '*' }).end();
          try {
            const m = JSON.parse(body) as Record<string, unknown>;
            this.#emit('preview-message', { previewId: 'fake', ...m });
          } catch {}
        });
      });
      server.listen(0, '127.0.0.1', () =>
        resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` }),
      );
    });
    const { url } = await this.#previewMessages;
    const send = `(type, message, stack, args) => navigator.sendBeacon(${JSON.stringify(url)}, JSON.stringify({ type, message, stack, args, port: Number(location.port), pathname: location.pathname, search: location.search, hash: location.hash }))`;
    const consoleErrors =
      forward === true
        ? `const e = console.error; console.error = (...args) => { send('PREVIEW_CONSOLE_ERROR', undefined, new Error().stack, args.map(String)); e(...args); };`
        : '';
    return `(() => { const send = ${send}; addEventListener('error', (e) => send('PREVIEW_UNCAUGHT_EXCEPTION', e.message, e.error?.stack)); addEventListener('unhandledrejection', (e) => send('PREVIEW_UNHANDLED_REJECTION', String(e.reason?.message ?? e.reason), e.reason?.stack)); ${consoleErrors} })();`;
  }

  readonly fs: WebContainerLike['fs'] = {
    writeFile: async (path: string, data: string | Uint8Array, _options?: unknown) => {
      this.calls.push(`fs.writeFile ${path}`);
      const target = await this.#resolve(path);
      const event = existsSync(target) ? 'change' : 'add';
      await writeFile(target, data);
      // A WebContainer's dev server learns of a write from its own in-memory file system, which
      // never misses one; the fake's Vite is told directly, as ProcessRuntime tells its own.
      await Promise.all([...this.#vites].map((v) => v.announce([{ path: target, event }])));
    },
    mkdir: (async (path: string, options?: { recursive?: boolean }) => {
      this.calls.push(`fs.mkdir ${path}${options?.recursive ? ' -p' : ''}`);
      await mkdir(await this.#resolve(path), { recursive: options?.recursive ?? false });
      return options?.recursive ? path : undefined;
    }) as WebContainerLike['fs']['mkdir'],
  };

  async #resolve(path: string): Promise<string> {
    const root = await this.#dir;
    const target = resolve(root, path.replace(/^\/+/, ''));
    if (target !== root && !target.startsWith(`${root}/`))
      throw new Error(`EACCES: ${path} is outside the workdir`);
    return target;
  }

  async mount(
    tree: FileSystemTree | Uint8Array | ArrayBuffer,
    options?: { mountPoint?: string },
  ): Promise<void> {
    this.calls.push('mount');
    if (
      !(tree && typeof tree === 'object' && !(tree instanceof Uint8Array) && !(tree instanceof ArrayBuffer))
    )
      throw new Error('the fake mounts FileSystemTree objects only');
    const write = async (dir: string, t: FileSystemTree) => {
      for (const [name, node] of Object.entries(t)) {
        if (name.includes('/') || name === '..' || name === '.')
          throw new Error(`invalid tree entry "${name}"`);
        const p = join(dir, name);
        if ('directory' in node) {
          await mkdir(p, { recursive: true });
          await write(p, node.directory);
        } else if ('file' in node && 'contents' in node.file) {
          await writeFile(p, node.file.contents);
        } else throw new Error(`the fake does not mount symlinks (${name})`);
      }
    };
    const base = await this.#resolve(options?.mountPoint ?? '.');
    await mkdir(base, { recursive: true });
    await write(base, tree);
  }

  spawn(command: string, args: string[], options?: SpawnOptions): Promise<WebContainerProcess>;
  spawn(command: string, options?: SpawnOptions): Promise<WebContainerProcess>;
  async spawn(command: string, argsOrOptions?: string[] | SpawnOptions): Promise<WebContainerProcess> {
    const args = Array.isArray(argsOrOptions) ? argsOrOptions : [];
    this.calls.push(`spawn ${[command, ...args].join(' ')}`);
    const dir = await this.#dir;
    let push: (s: string) => void = () => {};
    const output = new ReadableStream<string>({
      start(c) {
        push = (s) => {
          try {
            c.enqueue(s);
          } catch {}
        };
      },
    });
    const input = new WritableStream<string>();
    const done = (code: number, kill: () => void = () => {}): WebContainerProcess => ({
      exit: Promise.resolve(code),
      input,
      output,
      kill,
      resize: () => {},
    });
    const line = [command, ...args].join(' ');
    if (line === 'npm install') {
      if (!existsSync(join(dir, 'package.json'))) {
        push('npm ERR! enoent Could not read package.json\n');
        return done(254);
      }
      if (!existsSync(join(dir, 'node_modules')))
        await symlink(this.options.nodeModules, join(dir, 'node_modules'), 'dir');
      push('added 0 packages (offline copy)\n');
      return done(0);
    }
    if (line === 'npm run dev') {
      const port = await freePort();
      let vite: ViteHost;
      try {
        vite = ViteHost.start({
          dir,
          port,
          env: { ...process.env, FORCE_COLOR: '0', CI: '1' },
          headScript: await this.#previewScript(),
        });
      } catch (e) {
        push(`sh: vite: ${(e as Error).message}\n`);
        return done(127);
      }
      const child = vite.child;
      this.#vites.add(vite);
      child.once('exit', () => this.#vites.delete(vite));
      this.#children.add(child);
      child.stdout?.on('data', (b: Buffer) => push(b.toString()));
      child.stderr?.on('data', (b: Buffer) => push(b.toString()));
      const exit = new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
      vite.listening.then(
        () => {
          const url = `http://127.0.0.1:${port}`;
          this.#emit('port', port, 'open', url);
          this.#emit('server-ready', port, url);
        },
        () => {},
      );
      return { exit, input, output, kill: () => child.kill('SIGTERM'), resize: () => {} };
    }
    push(`jsh: command not found: ${command}\n`);
    return done(127);
  }

  #emit(event: string, ...args: unknown[]) {
    for (const l of this.#listeners.get(event) ?? []) (l as (...a: unknown[]) => void)(...args);
  }

  /** Test hook: what the container reports when the page in its preview throws. */
  emitPreviewError(message: string) {
    this.#emit('preview-message', {
      type: 'PREVIEW_UNCAUGHT_EXCEPTION',
      message,
      stack: undefined,
      previewId: 'x',
      port: 0,
      pathname: '/',
      search: '',
      hash: '',
    });
  }

  on(event: 'port', listener: PortListener): Unsubscribe;
  on(event: 'server-ready', listener: ServerReadyListener): Unsubscribe;
  on(event: 'preview-message', listener: PreviewMessageListener): Unsubscribe;
  on(event: 'error', listener: ErrorListener): Unsubscribe;
  on(event: 'xdg-open', listener: OpenListener): Unsubscribe;
  on(event: 'code', listener: CodeListener): Unsubscribe;
  on(event: string, listener: Listener): Unsubscribe {
    this.calls.push(`on ${event}`);
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  teardown(): void {
    this.calls.push('teardown');
    if (this.#tornDown) return;
    this.#tornDown = true;
    // teardown() is synchronous in the real API; the fake cleans up after its processes exit.
    const exits = [...this.#children].map((c) =>
      c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r)),
    );
    for (const c of this.#children) c.kill('SIGTERM');
    void this.#previewMessages?.then(({ server }) => server.close());
    void Promise.all(exits)
      .then(() => this.#dir)
      .then((d) => rm(d, { recursive: true, force: true, maxRetries: 3 }))
      .catch(() => {});
  }
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}
