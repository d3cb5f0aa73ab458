import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HmrTracker } from './hmr-tracker.ts';
import type { LogRing } from './log.ts';

/** What the daemon needs from a dev server, whatever runs it (in-process Vite, a child process). */
export interface DevServer {
  /** Starts it; resolves when it takes requests (not necessarily with 200). */
  start(): Promise<void>;
  /** Serves one app request. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Takes a WebSocket upgrade that is not the daemon's; false when it does not own this socket. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Status code of `GET /` through the same path a browser takes. */
  probe(): Promise<number>;
  /**
   * Tells the dev server that these existing files (absolute paths) were just rewritten, so it need
   * not wait for its file watcher. Optional: without it the watcher picks the change up.
   */
  notifyChanged?(files: readonly string[]): void;
  /**
   * Resolves once the dev server has taken in these just-written files (absolute paths), so a page
   * opened now is built from them. For a dev server that learns of changes only through its own
   * watcher (Metro); the claim's files are acked after it. Bounded; never rejects.
   */
  caughtUp?(files: readonly string[]): Promise<void>;
  /**
   * Runs the project as it is on disk now in a fresh process, switching over once that one takes
   * connections (the old one answers until then). Optional: servers that hot-swap code need none.
   */
  reload?(): Promise<void>;
  /** Resolves once the dev server's own caches are complete (used at image build). */
  settle?(): Promise<void>;
  /** True while its process (or in-process server) is alive. */
  readonly alive: boolean;
  close(): Promise<void>;
}

export interface DevServerOptions {
  projectDir: string;
  cacheDir: string;
  /** A cache made at image build for this template (copied into `cacheDir` when that is empty). */
  prebuiltCacheDir?: string;
  /** The daemon's own HTTP server (Vite attaches its HMR WebSocket to it). */
  httpServer: Server;
  /** Port the daemon listens on (for probes through the same path a browser takes). */
  daemonPort: () => number;
  /** Directories besides the project that the dev server may read (installed dependencies). */
  extraReadDirs: string[];
  /** Environment of the app's processes (the daemon's pass-through variables plus `appEnv`). */
  env: Record<string, string>;
  /**
   * The app's own environment (set by the claim, e.g. DATABASE_URL). In-process dev servers (Vite)
   * need it on their own: their config and `import.meta.env` read the daemon's process environment.
   */
  appEnv: Readonly<Record<string, string>>;
  tracker: HmrTracker;
  log: LogRing;
  /** How long an app process may take to open a port. */
  readyTimeoutMs: number;
  /** Called when the dev server exits by itself. */
  onExit: (reason: string) => void;
}

export type DevServerFactory = (opts: DevServerOptions) => DevServer;
