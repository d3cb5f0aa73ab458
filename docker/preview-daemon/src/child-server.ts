import type { ChildProcess } from 'node:child_process';
import { createReverseProxy } from '@preview/tiers/proxy';
import type { Upstream } from './app-port.ts';
import {
  type ChildKind,
  exitText,
  freePort,
  hostPort,
  spawnApp,
  terminate,
  waitListening,
} from './app-process.ts';
import type { DevServer, DevServerOptions } from './dev-server.ts';
import { METRO_WATCHED, MetroWatcher, prepareExpo } from './expo-metro.ts';
import { InflightRequests } from './inflight.ts';
import { NextHmrWatcher } from './next-hmr.ts';
import { TMP_DIR_NAME } from './validate.ts';
import { probeHttp } from './vite-server.ts';

export type { ChildKind } from './app-process.ts';

/** Files whose change a running Node server only sees after a restart (its code and config). */
export const NODE_CODE = /\.(?:[cm]?[jt]sx?|json|node)$/;

/** Paths Metro does not watch: installed packages and the daemon's temp directory. */
const IGNORED_BY_METRO = new RegExp(`/(?:node_modules|${TMP_DIR_NAME.replace('.', '\\.')})/`);

/**
 * Longest wait for Metro to take in the claim's files before they are acked (ms). Metro answers in
 * tens of milliseconds on an idle node; the bound only matters if its watcher missed the change.
 */
const METRO_CATCH_UP_MS = 5000;

/**
 * A dev server in its own process on an internal loopback port, which the daemon proxies (HTTP and
 * WebSocket upgrades): `next dev` for Next.js, `expo start` (Metro serving the web target, its
 * Fast Refresh socket at `/hot`) for Expo, and `node <main>` for plain Node servers.
 *
 * A Node server is restarted by the daemon, not by `node --watch`: the daemon knows every file it
 * wrote. `reload()` starts a fresh process on a new port next to the running one and switches to it
 * once it takes connections, so requests keep being answered by the old code until the new code
 * can answer (no gap, no blank frame), and one process start is saved (`--watch` is a parent
 * process that starts the app as its child).
 */
export function childDevServer(kind: ChildKind, opts: DevServerOptions): DevServer {
  let child: ChildProcess | undefined;
  /** The port the running process was given (`PORT`); requests in flight are counted by it. */
  let port = 0;
  /** Where the running process listens: `PORT`, or the port it chose itself. */
  let appAddr: Upstream = { host: '127.0.0.1', port: 0 };
  /** The app listens on a port of its own choosing, so two processes cannot run side by side. */
  let fixedPort = false;
  let metro: MetroWatcher | undefined;
  let stopping = false;
  let reloading: Promise<void> | undefined;
  let reloadAgain = false;
  /** Requests being proxied, by the app port they went to: an old process is stopped once it has none. */
  const inflight = new InflightRequests();
  /** Replaced processes still answering the requests they took. */
  const retiring = new Set<ChildProcess>();
  /** The project's one reverse proxy, kept-alive to the app's port. */
  const proxy = createReverseProxy({ maxSocketsPerHost: 64 });
  const nextHmr = new NextHmrWatcher({
    projectDir: opts.projectDir,
    tracker: opts.tracker,
    appHost: () => hostPort(appAddr),
    active: () => !stopping && child !== undefined,
  });
  const exited = (code: number | null, signal: NodeJS.Signals | null, what: string) =>
    exitText(opts.log, code, signal, what);
  const listening = (c: ChildProcess, appPort: number) => waitListening(c, appPort, opts);

  const start = (appPort: number): ChildProcess => {
    const c = spawnApp(kind, opts, appPort, (chunk) => opts.log.push(chunk.toString('utf8')));
    c.on('exit', (code, signal) => {
      if (child !== c) return;
      child = undefined;
      nextHmr.close();
      metro?.close();
      if (!stopping) opts.onExit(exited(code, signal, 'exited'));
    });
    return c;
  };

  /** One fresh process with the project as it is on disk now; the old one serves until it listens. */
  const swap = async () => {
    const nextPort = await freePort();
    const old = child;
    const oldPort = port;
    // An app on a port of its own cannot start beside itself: the old one stops first.
    if (fixedPort && old) {
      child = undefined;
      await terminate(old);
    }
    const next = start(nextPort);
    let up: Upstream | undefined;
    try {
      up = await listening(next, nextPort);
    } catch (e) {
      // No port in time: the app is down (the old process too), and the daemon says why.
      void terminate(next);
      child = undefined;
      if (old) void terminate(old);
      opts.onExit((e as Error).message);
      return;
    }
    if (stopping) {
      void terminate(next);
      return;
    }
    // A new process that exits at once (a syntax error) replaces the old one too: the app is down,
    // and its output is what the status page shows, as it would be after any crash.
    child = up ? next : undefined;
    port = nextPort;
    if (up) {
      appAddr = up;
      fixedPort = up.port !== nextPort;
    }
    // Requests the old process already took are answered by it before it stops.
    if (old) {
      retiring.add(old);
      void inflight
        .drained(oldPort, 10_000)
        .then(() => terminate(old))
        .finally(() => retiring.delete(old));
    }
    if (up) opts.tracker.sent('restart', true);
    else opts.onExit(exited(next.exitCode, next.signalCode, 'exited before it opened a port'));
  };

  const reload = (): Promise<void> => {
    // Changes that arrive while a new process starts get one more after it.
    if (reloading) {
      reloadAgain = true;
      return reloading;
    }
    reloading = (async () => {
      do {
        reloadAgain = false;
        await swap();
      } while (reloadAgain && !stopping);
    })().finally(() => {
      reloading = undefined;
    });
    return reloading;
  };

  return {
    get alive() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    async start() {
      stopping = false;
      if (kind === 'expo') prepareExpo(opts);
      port = await freePort();
      const c = start(port);
      child = c;
      // Wait until it takes connections; readiness (an answer) is the daemon's probe.
      let up: Upstream | undefined;
      try {
        up = await listening(c, port);
      } catch (e) {
        if (child === c) child = undefined;
        await terminate(c);
        throw e;
      }
      if (!up || child !== c)
        throw new Error(exited(c.exitCode, c.signalCode, 'exited before it opened a port'));
      appAddr = up;
      fixedPort = up.port !== port;
      if (kind === 'next') nextHmr.watch();
      if (kind === 'expo') {
        metro = new MetroWatcher({
          upstream: () => appAddr,
          alive: () => child === c && c.exitCode === null,
          tracker: opts.tracker,
          log: opts.log,
          timeoutMs: Math.max(opts.readyTimeoutMs, 180_000),
        });
        // The first bundle is built now, not when a claimer's browser first asks for it.
        void metro.warm();
      }
    },
    // Ready (and the image build's cache complete) once Metro built the page's bundle.
    ...(kind === 'expo'
      ? {
          async settle() {
            if (metro && !(await metro.warm())) throw new Error('Metro built no bundle for the page');
          },
          async caughtUp(files: readonly string[]) {
            if (metro && files.some((f) => METRO_WATCHED.test(f) && !IGNORED_BY_METRO.test(f)))
              await metro.caughtUp(METRO_CATCH_UP_MS);
          },
        }
      : {}),
    ...(kind === 'node'
      ? {
          notifyChanged(files: readonly string[]) {
            if (files.some((f) => NODE_CODE.test(f))) void reload();
          },
          reload,
        }
      : {}),
    handle(req, res) {
      const target = appAddr;
      res.once('close', inflight.begin(port));
      proxy.web(req, res, {
        origin: `http://${hostPort(target)}`,
        errorResponse: (r, e) => {
          r.writeHead(502, { 'content-type': 'text/plain' }).end(`dev server unreachable: ${e.message}`);
        },
      });
    },
    upgrade(req, socket, head) {
      proxy.ws(req, socket, head, { origin: `http://${hostPort(appAddr)}` });
      return true;
    },
    async probe() {
      const code = await probeHttp(appAddr.port, 'localhost', 120_000, appAddr.host);
      // Expo: `/` answers at once, the bundle it names takes Metro seconds to build (minutes on a
      // cold cache); ready means a page opened now renders without waiting for that.
      if (code === 200 && metro) await metro.warm();
      return code;
    },
    async close() {
      stopping = true;
      nextHmr.close();
      metro?.close();
      const c = child;
      child = undefined;
      await reloading?.catch(() => {});
      await Promise.all([terminate(c), ...[...retiring].map(terminate)]);
      proxy.close();
    },
  };
}
