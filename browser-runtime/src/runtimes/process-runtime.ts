import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PreviewError, type ProjectFiles, TimeoutError } from '@preview/tiers';
import { checkPath, decodeFiles, Emitter } from './files.ts';
import type { PreviewRuntime, RuntimeCallOptions, RuntimeEvents, ServerReady } from './types.ts';
import { type FileChange, VITE_HOST_TMP_DIR, ViteHost } from './vite-host.ts';

/** How long `writeFile` gives esbuild's syntax check (ms) before it goes on without it. */
const SYNTAX_CHECK_TIMEOUT_MS = 5_000;

/** Resolves with `p`, or with `undefined` once `ms` have passed. */
function withTimeout<T>(ms: number, p: Promise<T>): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const REPO_NODE_MODULES = resolve(dirname(fileURLToPath(import.meta.url)), '../../../node_modules');

export interface ProcessRuntimeOptions {
  /** Project directory; default a fresh temporary one (removed on teardown). */
  dir?: string;
  /**
   * Dependencies come from this installed node_modules (linked, offline). Default the repo's.
   * `null` runs `npm install` in the project instead.
   */
  nodeModulesDir?: string | null;
  /** How long `run` waits for the dev server (default 60 s). */
  startTimeoutMs?: number;
}

/**
 * Runs the project with Vite in a child process (Node only; `@preview/browser-runtime/process`).
 * It is how the runtime contract runs where no browser runtime can boot, and what Node tooling uses.
 * Not isolated: the project runs with this user's rights.
 *
 * @example
 * const rt = new ProcessRuntime();
 * await rt.mount(files); await rt.install();
 * const { url } = await rt.run(); // http://127.0.0.1:<port>/
 */
export class ProcessRuntime implements PreviewRuntime {
  readonly kind = 'process' as const;
  readonly #o: ProcessRuntimeOptions;
  readonly #events = new Emitter<RuntimeEvents>();
  #dir: string | undefined;
  #ownsDir = false;
  #vite: ViteHost | undefined;
  #ready: ServerReady | undefined;
  #tornDown = false;
  #tmpSeq = 0;

  constructor(options: ProcessRuntimeOptions = {}) {
    this.#o = options;
  }

  on<E extends keyof RuntimeEvents>(event: E, listener: (p: RuntimeEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  #alive() {
    if (this.#tornDown) throw new PreviewError('runtime_torn_down', 'the runtime was torn down');
  }

  async mount(files: ProjectFiles): Promise<void> {
    this.#alive();
    const decoded = decodeFiles(files);
    if (!this.#dir) {
      if (this.#o.dir) {
        this.#dir = this.#o.dir;
        await mkdir(this.#dir, { recursive: true });
      } else {
        this.#dir = await mkdtemp(join(tmpdir(), 'preview-process-'));
        this.#ownsDir = true;
      }
    }
    await mkdir(join(this.#dir, VITE_HOST_TMP_DIR), { recursive: true });
    const written: FileChange[] = [];
    for (const [path, content] of decoded) written.push(await this.#write(path, content));
    await this.#vite?.announce(written);
  }

  /**
   * Writes one file atomically (staged in the reserved temp dir, renamed over the target): the dev
   * server never reads half of it.
   */
  async #write(path: string, content: string | Uint8Array): Promise<FileChange> {
    const target = join(this.#dir!, path);
    await mkdir(dirname(target), { recursive: true });
    const tmp = join(this.#dir!, VITE_HOST_TMP_DIR, `${process.pid}.${++this.#tmpSeq}.tmp`);
    await writeFile(tmp, content);
    const event = existsSync(target) ? 'change' : 'add';
    await rename(tmp, target);
    return { path: target, event };
  }

  async install(): Promise<void> {
    this.#alive();
    if (!this.#dir) throw new PreviewError('runtime_not_mounted', 'install() before mount()');
    const nm = join(this.#dir, 'node_modules');
    if (existsSync(nm)) return;
    const from = this.#o.nodeModulesDir === undefined ? REPO_NODE_MODULES : this.#o.nodeModulesDir;
    if (from) {
      await symlink(from, nm, 'dir');
      return;
    }
    const code = await new Promise<number>((res) => {
      const c = spawn('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], {
        cwd: this.#dir,
        stdio: 'ignore',
      });
      c.once('exit', (n) => res(n ?? 1));
      c.once('error', () => res(1));
    });
    if (code !== 0) throw new PreviewError('install_failed', `npm install exited with ${code}`);
  }

  async run(options: RuntimeCallOptions = {}): Promise<ServerReady> {
    this.#alive();
    if (!this.#dir) throw new PreviewError('runtime_not_mounted', 'run() before mount()');
    if (this.#ready) return this.#ready;
    const port = await freePort();
    const vite = ViteHost.start({
      dir: this.#dir,
      port,
      env: { ...process.env, NODE_ENV: 'development', FORCE_COLOR: '0', CI: '1' },
    });
    this.#vite = vite;
    const child = vite.child;
    let output = '';
    const onData = (b: Buffer) => {
      const text = b.toString();
      output = (output + text).slice(-10_000);
      // Vite reports transform errors on its logger; the page shows them in its overlay.
      for (const line of text.split('\n'))
        if (/\berror\b/i.test(line) && /vite|transform|failed to/i.test(line))
          this.#events.emit('error', new PreviewError('dev_server_error', line.trim()));
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code, sig) => {
      if (this.#vite === vite && !this.#tornDown)
        this.#events.emit(
          'error',
          new PreviewError('dev_server_exited', `vite exited (${code ?? sig}): ${output.slice(-500)}`),
        );
      if (this.#vite === vite) this.#vite = undefined;
      this.#ready = undefined;
    });

    const timeoutMs = this.#o.startTimeoutMs ?? 60_000;
    const signal = AbortSignal.any([
      AbortSignal.timeout(timeoutMs),
      ...(options.signal ? [options.signal] : []),
    ]);
    const stopped = new Promise<never>((_, reject) =>
      signal.addEventListener('abort', () =>
        reject(
          options.signal?.aborted
            ? options.signal.reason
            : new TimeoutError(
                'timeout',
                `vite did not listen within ${timeoutMs} ms: ${output.slice(-500)}`,
              ),
        ),
      ),
    );
    try {
      await Promise.race([
        vite.listening.catch((e: Error) => {
          throw new PreviewError('dev_server_exited', `${e.message}: ${output.slice(-500)}`);
        }),
        stopped,
      ]);
    } catch (e) {
      if (child.exitCode === null) child.kill('SIGKILL');
      throw e;
    }
    this.#ready = { url: `http://127.0.0.1:${port}/`, port };
    this.#events.emit('server-ready', this.#ready);
    return this.#ready;
  }

  async writeFile(path: string, content: string | Uint8Array): Promise<void> {
    this.#alive();
    checkPath(path);
    if (!this.#dir) throw new PreviewError('runtime_not_mounted', 'writeFile() before mount()');
    const change = await this.#write(path, content);
    await this.#vite?.announce([change]);
    if (this.#ready) await this.#syntaxCheck(path, content);
  }

  /**
   * Vite serves plain modules untransformed, so a syntax error would only show in the page. Parse
   * what was written (as the bundler runtime's build would) and report it as an `error` event.
   */
  async #syntaxCheck(path: string, content: string | Uint8Array) {
    const loader = /\.(m?js|jsx|tsx?|css)$/.exec(path)?.[1];
    if (!loader) return;
    const esbuild = await import('esbuild').catch(() => undefined);
    if (!esbuild) return;
    const text = typeof content === 'string' ? content : new TextDecoder().decode(content);
    try {
      // Bounded: esbuild's service has been seen to never answer on a loaded machine, and the check
      // is advisory (the page shows the error either way); writeFile must not hang on it.
      await withTimeout(
        SYNTAX_CHECK_TIMEOUT_MS,
        esbuild.transform(text, {
          loader: loader === 'mjs' ? 'js' : (loader as 'js' | 'jsx' | 'ts' | 'tsx' | 'css'),
          sourcefile: path,
          logLevel: 'silent',
        }),
      );
    } catch (e) {
      const first = (e as { errors?: Array<{ text: string; location?: { line: number; column: number } }> })
        .errors?.[0];
      const where = first?.location ? `:${first.location.line}:${first.location.column}` : '';
      this.#events.emit(
        'error',
        new PreviewError('syntax_error', `${path}${where}: ${first?.text ?? String(e)}`),
      );
    }
  }

  async teardown(): Promise<void> {
    if (this.#tornDown) return;
    this.#tornDown = true;
    const child = this.#vite?.child;
    this.#vite = undefined;
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(t);
    }
    if (this.#ownsDir && this.#dir) await rm(this.#dir, { recursive: true, force: true });
    this.#events.clear();
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
