import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PreviewError } from '@preview/tiers';

const HOST_SCRIPT = fileURLToPath(new URL('./process-vite-host.mjs', import.meta.url));
/** How long `announce` waits for Vite's ack (ms): it takes a few ms unless Vite hangs. */
const ANNOUNCE_TIMEOUT_MS = 30_000;

/**
 * Where a runtime stages writes before renaming them into place: reserved for the sandbox in every
 * project (`RESERVED_DIRS` of `@preview/tiers`), so no project file is there, and the dev
 * server's watcher ignores it.
 */
export const VITE_HOST_TMP_DIR = '.preview-tmp';

/** A file change as the dev server is told of it: an absolute path and Vite's watcher event. */
export interface FileChange {
  path: string;
  event: 'add' | 'change' | 'unlink';
}

export interface ViteHostOptions {
  /** The project root (the child's cwd). */
  dir: string;
  /** Port to listen on (`strictPort`). */
  port: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** The child's environment. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Inline JavaScript put first in the `<head>` of every HTML page Vite serves. @default none */
  headScript?: string;
}

/**
 * The project's own Vite in a child process (process-vite-host.mjs), started through Vite's API so
 * that whoever writes the project's files can announce them: `announce` resolves once Vite has
 * invalidated them, so a request after it never gets the previous version. Vite's file watcher
 * alone misses writes that land while it still handles the one before (see the host script).
 * `child.stdout`/`stderr` carry Vite's log.
 *
 * @example
 * const vite = ViteHost.start({ dir, port });
 * await vite.listening;
 * await writeFile(join(dir, 'src/a.js'), code);
 * await vite.announce([{ path: join(dir, 'src/a.js'), event: 'change' }]);
 */
export class ViteHost {
  readonly child: ChildProcess;
  /** Resolves once Vite listens. @throws PreviewError `dev_server_exited` when it exits first. */
  readonly listening: Promise<void>;
  readonly #acks = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #seq = 0;
  #listening = false;

  private constructor(options: ViteHostOptions) {
    const vite = resolveViteModule(options.dir);
    const host = options.host ?? '127.0.0.1';
    const args = [HOST_SCRIPT, vite, String(options.port), host, VITE_HOST_TMP_DIR];
    if (options.headScript) args.push(options.headScript);
    this.child = spawn(process.execPath, args, {
      cwd: options.dir,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    this.listening = new Promise<void>((resolve, reject) => {
      this.child.on('message', (m: { ready?: string; ack?: number }) => {
        if (m.ready) {
          this.#listening = true;
          resolve();
        } else if (m.ack !== undefined) {
          this.#acks.get(m.ack)?.resolve();
          this.#acks.delete(m.ack);
        }
      });
      this.child.once('exit', (code, signal) => {
        const gone = new PreviewError('dev_server_exited', `vite exited (${code ?? signal})`);
        this.#listening = false;
        reject(gone);
        for (const a of this.#acks.values()) a.reject(gone);
        this.#acks.clear();
      });
    });
    // Only the first failure is the caller's; later ones (an exit after listening) are not unhandled.
    this.listening.catch(() => {});
  }

  /** Spawns the host. @throws PreviewError `vite_missing` when the project resolves no Vite. */
  static start(options: ViteHostOptions): ViteHost {
    return new ViteHost(options);
  }

  /**
   * Tells Vite of written files; resolves once they are invalidated (no-op before it listens: its
   * first requests read the disk anyway).
   * @throws PreviewError `dev_server_exited` when Vite exits first, `dev_server_unresponsive` when
   * it does not answer within 30 s.
   */
  announce(files: readonly FileChange[]): Promise<void> {
    if (!this.#listening || files.length === 0 || !this.child.connected) return Promise.resolve();
    const id = ++this.#seq;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#acks.delete(id);
        reject(
          new PreviewError(
            'dev_server_unresponsive',
            `vite did not take ${files.length} written file(s) within ${ANNOUNCE_TIMEOUT_MS} ms`,
          ),
        );
      }, ANNOUNCE_TIMEOUT_MS);
      this.#acks.set(id, {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, files });
    });
  }
}

/** The URL of the Vite the project resolves (its `exports['.']` entry), nearest node_modules first. */
function resolveViteModule(dir: string): string {
  for (let d = dir; ; d = dirname(d)) {
    const pkg = join(d, 'node_modules', 'vite', 'package.json');
    if (existsSync(pkg)) {
      const exp = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports?: Record<string, unknown> }).exports?.[
        '.'
      ];
      const conditions = exp as { import?: unknown; default?: unknown } | undefined;
      const entry = typeof exp === 'string' ? exp : (conditions?.import ?? conditions?.default);
      if (typeof entry !== 'string')
        throw new PreviewError('vite_missing', `${pkg} has no ESM entry in exports["."]`);
      return pathToFileURL(join(dirname(pkg), entry)).href;
    }
    if (dirname(d) === d)
      throw new PreviewError('vite_missing', `vite is not installed for ${dir} (run install() first)`);
  }
}
