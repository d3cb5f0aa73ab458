import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, readdirSync } from 'node:fs';
import { createServer, type IncomingMessage, request } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { HotPayload, InlineConfig, Plugin, ViteDevServer } from 'vite';
import { WebSocketServer } from 'ws';
import type { DevServer, DevServerOptions } from './dev-server.ts';
import { importFromProject } from './load-package.ts';
import { TMP_DIR_NAME } from './validate.ts';

/** How long after the daemon announced a change the watcher's duplicate is still expected. */
const ANNOUNCE_WINDOW_MS = 1000;

const CONFIG_FILES = ['vite.config.js', 'vite.config.mjs', 'vite.config.ts', 'vite.config.mts'];

/**
 * Vite's HMR WebSocket tokens (checked on every HMR upgrade that has an Origin, against cross-site
 * WebSocket hijacking): one per Vite server, drawn by the daemon, so a token names the server whose
 * `/@vite/client` a page runs. A server restarted by the daemon (an install, a new environment) or
 * by Vite itself (a config edit) has a new module graph: a page whose modules the old one served
 * gets no HMR update from it (the edited file is not in its graph). Such a page connecting with an
 * older token is told to reload (see {@link answerWithReload}) instead of being refused (400, then
 * no updates ever) or accepted (connected, then no updates ever).
 */
const issuedTokens = new Set<string>();
/** Tokens kept to recognise a stale page; older ones are refused by Vite like any unknown token. */
const MAX_ISSUED_TOKENS = 64;

function mintToken(): string {
  const token = randomBytes(12).toString('base64url');
  issuedTokens.add(token);
  if (issuedTokens.size > MAX_ISSUED_TOKENS)
    issuedTokens.delete(issuedTokens.values().next().value as string);
  return token;
}

/**
 * How long after its creation a Vite server nobody owns (see `configureServer`) is closed, ms: its
 * restart (which made it) has long finished by then.
 */
const ZOMBIE_CLOSE_MS = 10_000;

const reloadSockets = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 4096 });

/**
 * Takes a Vite HMR upgrade (`Sec-WebSocket-Protocol: vite-hmr`) from a page whose Vite server is
 * gone (restarted or restarting), and tells it to reload: Vite's client handles `full-reload` with
 * `location.reload()` (a navigation the daemon answers with its not-ready page until a server is
 * back). The socket then closes cleanly (code 1000), which Vite's client does not poll on.
 */
export function answerWithReload(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  reloadSockets.handleUpgrade(req, socket, head, (ws) => {
    ws.send(JSON.stringify({ type: 'full-reload', path: '*' }), () => ws.close(1000));
  });
}

/**
 * The page fetches each module an HMR update names (`acceptedPath`) as soon as the update reaches
 * it: their transforms start now, and its request joins the one under way (Vite shares a module's
 * pending transform) instead of starting it a socket round trip later. A transform error is logged
 * by Vite ("Pre-transform error") and answered to the page's request as before.
 */
function warmUpdatedModules(
  client: { warmupRequest?: (url: string) => Promise<void> },
  payload: Extract<HotPayload, { type: 'update' }>,
): void {
  for (const u of payload.updates)
    if (u.type === 'js-update') void client.warmupRequest?.(u.acceptedPath).catch(() => {});
}

/** The `token` query parameter of an HMR upgrade (Vite's client sends `?token=`), if any. */
function tokenOf(req: IncomingMessage): string | null {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get('token');
}

/** Names this module put into the daemon's process environment for the app. */
const appliedNames = new Set<string>();

/**
 * Vite runs in the daemon's process, and the app reads its environment from that process: its
 * `vite.config.*` from `process.env`, and Vite's `loadEnv` fills `import.meta.env` from `process.env`
 * (only `envPrefix` names, `VITE_` by default, reach the browser: Vite's own rule). So the claim's
 * environment goes into `process.env` before Vite starts. The daemon parsed its own configuration
 * at start, and its children get explicit environments, so nothing else sees these; the names are
 * validated (no PATH, NODE_OPTIONS, PREVIEW_*…), so none of them changes how the daemon runs.
 */
function exposeToProcess(env: Readonly<Record<string, string>>): void {
  for (const name of appliedNames) if (!Object.hasOwn(env, name)) delete process.env[name];
  appliedNames.clear();
  for (const [name, value] of Object.entries(env)) {
    process.env[name] = value;
    appliedNames.add(name);
  }
}

/**
 * Vite in the daemon's own process (`createServer`, middleware mode): one Node process per preview,
 * and a direct hook on HMR. Vite's HMR WebSocket rides on the daemon's HTTP server and port, and
 * the injected client connects back to whatever host and port served the page (the router's proxy).
 */
export function viteDevServer(opts: DevServerOptions): DevServer {
  let server: ViteDevServer | undefined;
  let closed = false;
  // The token the running server injects into `/@vite/client` (its own resolved config's).
  let currentToken: string | undefined;
  // Vite's HMR upgrade listeners hang on a server of this dev server's own that never listens: the
  // daemon hands it the upgrades this dev server should take (see `upgrade`). A Vite server that
  // outlives this dev server (a restart of Vite's own under way when the daemon closed it) attaches
  // there too, and never sees a page's socket (on the daemon's server it answered them 400).
  const hmrServer = createServer();
  // Vite's own HMR send, beside the one the plugin wraps to report updates to the tracker.
  let untrackedSend: ((p: HotPayload) => void) | undefined;
  /**
   * Vite's own restart (a config or .env edit) attaches the new server's HMR listener before it
   * closes the old one, and two listeners then take the same socket (ws throws, and the daemon
   * dies). Keeps the newest Vite listener, or none (`keep` 0).
   */
  const pruneUpgrade = (keep: 0 | 1) => {
    const vites = hmrServer.listeners('upgrade');
    for (const l of vites.slice(0, vites.length - keep))
      hmrServer.off('upgrade', l as (...args: unknown[]) => void);
  };
  // Files the daemon announced itself; the watcher's own 'change' for them is then a duplicate.
  const announced = new Map<string, number>();
  let emitChange: ((file: string) => void) | undefined;

  const plugin: Plugin = {
    name: 'preview-daemon',
    enforce: 'pre',
    configResolved(config) {
      (config as { webSocketToken: string }).webSocketToken = mintToken();
    },
    // Runs for the first server and again after every restart (config edits), so the hook follows.
    configureServer(s) {
      if (closed) {
        // A restart of Vite's own that began before the daemon closed this dev server: the new
        // server is nobody's. Its listener is on hmrServer, which gets no upgrades any more; it is
        // closed once its restart has finished (closing it inside its own creation is not safe).
        setTimeout(() => void s.close().catch(() => {}), ZOMBIE_CLOSE_MS).unref();
        return;
      }
      currentToken = (s.config as { webSocketToken?: string }).webSocketToken;
      // Also after Vite restarted itself: its new HMR listener is registered by now.
      pruneUpgrade(1);
      // The edit path skips the file watcher (chokidar: an inotify event, a stat, the atomic-
      // write settling) by emitting the 'change' Vite listens for right after the rename, and
      // drops the watcher's own event for that file when it follows.
      const watcher = s.watcher;
      const emit = watcher.emit.bind(watcher) as (event: string, ...args: unknown[]) => boolean;
      watcher.emit = ((event: string, ...args: unknown[]) => {
        if (event === 'change' && typeof args[0] === 'string') {
          const t = announced.get(args[0]);
          if (t !== undefined) {
            announced.delete(args[0]);
            if (performance.now() - t < ANNOUNCE_WINDOW_MS) return true;
          }
        }
        return emit(event, ...args);
      }) as typeof watcher.emit;
      emitChange = (file) => emit('change', file);
      const hot = s.environments.client.hot;
      const send = hot.send.bind(hot) as (p: HotPayload) => void;
      untrackedSend = send;
      hot.send = ((payload: HotPayload) => {
        send(payload);
        if (payload.type === 'update') {
          opts.tracker.sent('update');
          warmUpdatedModules(s.environments.client, payload);
        } else if (payload.type === 'full-reload') opts.tracker.sent('full-reload');
      }) as typeof hot.send;
    },
    hotUpdate: {
      order: 'pre',
      handler(ctx) {
        if (this.environment.name === 'client') opts.tracker.touch(ctx.file);
      },
    },
  };

  const push = (msg: string) => opts.log.push(msg);
  const logger = {
    hasWarned: false,
    info: push,
    warn(msg: string) {
      logger.hasWarned = true;
      push(msg);
    },
    warnOnce: push,
    error: push,
    clearScreen() {},
    hasErrorLogged: () => false,
  };

  return {
    get alive() {
      return server !== undefined && !closed;
    },
    async start() {
      const cacheDir = join(opts.cacheDir, 'vite');
      // Pre-bundled dependencies from the image build: skipping the optimizer at start saves
      // time and, above all, the memory its bundler keeps afterwards. Vite re-checks the hash
      // (lockfile, config, root) and re-optimizes if the project no longer matches.
      if (opts.prebuiltCacheDir && existsSync(opts.prebuiltCacheDir) && !existsSync(cacheDir))
        cpSync(opts.prebuiltCacheDir, cacheDir, { recursive: true });
      exposeToProcess(opts.appEnv);
      const vite = await importFromProject<typeof import('vite')>(opts.projectDir, 'vite');
      const configFile = CONFIG_FILES.map((f) => join(opts.projectDir, f)).find((f) => existsSync(f));
      const config: InlineConfig = {
        root: opts.projectDir,
        configFile: configFile ?? false,
        // Vite's bundling loader (its default): it compiles a TypeScript config, which Node 20's
        // native loader cannot import. It writes the compiled config to node_modules/.vite-temp,
        // which is writable: the project's node_modules is its own directory (see deps.ts).
        configLoader: 'bundle',
        cacheDir,
        clearScreen: false,
        customLogger: logger,
        appType: 'spa',
        plugins: [plugin],
        // `compilerOptions.paths` of the project's tsconfig apply, as in its editor.
        resolve: { tsconfigPaths: true },
        server: {
          middlewareMode: true,
          ws: { server: hmrServer },
          allowedHosts: true,
          watch: { ignored: [`**/${TMP_DIR_NAME}/**`, '**/node_modules/**', '**/.git/**'] },
          fs: { allow: [opts.projectDir, cacheDir, ...opts.extraReadDirs] },
        },
      };
      server = await vite.createServer(config);
      pruneUpgrade(1);
      closed = false;
    },
    handle(req, res) {
      if (!server) {
        res.writeHead(503).end();
        return;
      }
      server.middlewares(req, res, () => {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      });
    },
    notifyChanged(files) {
      if (!emitChange || closed) return;
      const now = performance.now();
      for (const f of files) {
        announced.set(f, now);
        emitChange(f);
      }
      if (announced.size > 1000)
        for (const [f, t] of announced) if (now - t > ANNOUNCE_WINDOW_MS) announced.delete(f);
    },
    async settle() {
      // Done when the optimizer committed its metadata and left no temp directory; a project
      // without dependencies to pre-bundle never creates the cache directory at all.
      const dir = join(opts.cacheDir, 'vite');
      for (let i = 0; i < 600; i++) {
        if (!existsSync(dir)) {
          if (i >= 50) return;
        } else if (
          existsSync(join(dir, 'deps', '_metadata.json')) &&
          !readdirSync(dir).some((n) => n.startsWith('deps_temp'))
        )
          return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('the dependency optimizer did not finish');
    },
    // Vite's HMR sockets go to the running server's listener (on hmrServer); a page whose client
    // an earlier server served, or one that connects while no server runs, is told to reload.
    upgrade(req, socket, head) {
      const protocol = req.headers['sec-websocket-protocol'];
      if (protocol !== 'vite-hmr' && protocol !== 'vite-ping') return false;
      const live = server !== undefined && !closed && hmrServer.listenerCount('upgrade') > 0;
      // No server: the daemon refuses the restart poll's ping (503), so it asks again.
      if (protocol === 'vite-ping' && !live) return false;
      const token = tokenOf(req);
      if (
        protocol === 'vite-hmr' &&
        (!live || (token !== null && token !== currentToken && issuedTokens.has(token)))
      )
        answerWithReload(req, socket, head);
      else hmrServer.emit('upgrade', req, socket, head);
      return true;
    },
    probe: () => probeHttp(opts.daemonPort(), 'localhost'),
    async close() {
      closed = true;
      const s = server;
      server = undefined;
      // The pages this server served reload now (into the daemon's self-reloading not-ready page,
      // then the next server's app) instead of polling for a restart through the proxy.
      // Not through the tracker: this reload answers no edit (the restart's own report does).
      if (s) untrackedSend?.({ type: 'full-reload', path: '*' });
      untrackedSend = undefined;
      pruneUpgrade(0);
      await s?.close();
    },
  };
}

/** `GET /` as a browser asks for it; resolves with the status code (0 when unreachable). */
export function probeHttp(
  port: number,
  host: string,
  timeoutMs = 30_000,
  address = '127.0.0.1',
): Promise<number> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: address,
        port,
        path: '/',
        headers: { host: `${host}:${port}`, accept: 'text/html,*/*', 'x-preview-probe': '1' },
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}
