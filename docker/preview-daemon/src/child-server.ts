import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createReverseProxy } from '@preview/tiers/proxy';
import WebSocket from 'ws';
import { listeningSockets, type Upstream } from './app-port.ts';
import type { DevServer, DevServerOptions } from './dev-server.ts';
import {
  expoArgs,
  expoEnv,
  MetroWatcher,
  metroConfigPath,
  metroConfigWrapper,
  metroTmpDir,
} from './expo-metro.ts';
import { packageDir } from './load-package.ts';
import { probeHttp } from './vite-server.ts';

export type ChildKind = 'next' | 'node' | 'expo';

/** Files whose change a running Node server only sees after a restart (its code and config). */
export const NODE_CODE = /\.(?:[cm]?[jt]sx?|json|node)$/;

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
  let hmrSocket: WebSocket | undefined;
  let metro: MetroWatcher | undefined;
  let stopping = false;
  let reloading: Promise<void> | undefined;
  let reloadAgain = false;
  /** Requests being proxied, by the app port they went to: an old process is stopped once it has none. */
  const inflight = new Map<number, number>();
  const drainWaiters = new Map<number, () => void>();
  /** Replaced processes still answering the requests they took. */
  const retiring = new Set<ChildProcess>();
  /** The project's one reverse proxy, kept-alive to the app's port. */
  const proxy = createReverseProxy({ maxSocketsPerHost: 64 });

  /** Resolves when no request to `appPort` is in flight, or after `maxMs`. */
  const drained = (appPort: number, maxMs: number): Promise<void> => {
    if (!inflight.get(appPort)) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, maxMs);
      function done() {
        clearTimeout(t);
        drainWaiters.delete(appPort);
        resolve();
      }
      drainWaiters.set(appPort, done);
    });
  };

  const onOutput = (chunk: Buffer) => {
    opts.log.push(chunk.toString('utf8'));
  };

  const spawnApp = (appPort: number): ChildProcess => {
    // The app is told where to listen (PORT, HOST: what hosting platforms set); one that listens
    // elsewhere is found by its sockets (see `listening`).
    const env = {
      ...opts.env,
      PORT: String(appPort),
      HOST: kind === 'next' ? '127.0.0.1' : '0.0.0.0',
      HOSTNAME: '127.0.0.1',
      NEXT_TELEMETRY_DISABLED: '1',
    };
    const c = spawn(process.execPath, argsFor(kind, opts.projectDir, appPort), {
      cwd: opts.projectDir,
      env: kind === 'expo' ? expoEnv(env, opts.cacheDir) : env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    c.stdout!.on('data', onOutput);
    c.stderr!.on('data', onOutput);
    c.on('exit', (code, signal) => {
      if (child !== c) return;
      child = undefined;
      hmrSocket?.close();
      metro?.close();
      if (!stopping) opts.onExit(exitText(code, signal, 'exited'));
    });
    return c;
  };

  /** `the app exited with code 1` and its last lines. */
  const exitText = (code: number | null, signal: NodeJS.Signals | null, what: string) => {
    const lines = opts.log.tail(5);
    return `the app ${what} with ${signal ? `signal ${signal}` : `code ${code}`}${lines.length ? `; last lines:\n${lines.join('\n')}` : ''}`;
  };

  /**
   * Where `c` takes connections: on `appPort` (its PORT), or on a port it opened itself (found from
   * its sockets in /proc, checked every 50 ms). `undefined` when it exited first.
   * @throws Error naming the port expected, after `opts.readyTimeoutMs` without a listening port.
   */
  const listening = async (c: ChildProcess, appPort: number): Promise<Upstream | undefined> => {
    const deadline = Date.now() + opts.readyTimeoutMs;
    for (let i = 1; ; i++) {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      if (await canConnect(appPort)) return { host: '127.0.0.1', port: appPort };
      if (i % 5 === 0 && c.pid !== undefined) {
        const own = listeningSockets(c.pid)[0];
        if (own && c.exitCode === null) {
          opts.log.push(`the app listens on port ${own.port} (it was given PORT=${appPort}); proxying to it`);
          return own;
        }
      }
      if (Date.now() > deadline) {
        const lines = opts.log.tail(5);
        throw new Error(
          `the app opened no port within ${Math.round(opts.readyTimeoutMs / 1000)} s (it was given PORT=${appPort} and listens on none)${lines.length ? `; last lines:\n${lines.join('\n')}` : ''}`,
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  const terminate = (c: ChildProcess | undefined): Promise<void> => {
    if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5_000);
    return exited.finally(() => clearTimeout(t));
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
    const next = spawnApp(nextPort);
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
      void drained(oldPort, 10_000)
        .then(() => terminate(old))
        .finally(() => retiring.delete(old));
    }
    if (up) opts.tracker.sent('restart', true);
    else opts.onExit(exitText(next.exitCode, next.signalCode, 'exited before it opened a port'));
  };

  // Next's browser HMR socket: the daemon listens as one more client to learn when a build went out.
  const watchNextHmr = () => {
    if (stopping || !child) return;
    const ws = new WebSocket(`ws://${hostPort(appAddr)}${nextHmrPath(opts.projectDir)}`);
    hmrSocket = ws;
    ws.on('message', (data) => {
      let msg: { action?: string; type?: string };
      try {
        msg = JSON.parse(String(data));
      } catch {
        return;
      }
      const action = msg.action ?? msg.type;
      if (action && NEXT_UPDATES.has(action)) opts.tracker.sent('update', true);
      else if (action === 'reloadPage') opts.tracker.sent('full-reload', true);
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (hmrSocket === ws && !stopping && child) setTimeout(watchNextHmr, 1000).unref();
    });
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
      const c = spawnApp(port);
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
        throw new Error(exitText(c.exitCode, c.signalCode, 'exited before it opened a port'));
      appAddr = up;
      fixedPort = up.port !== port;
      if (kind === 'next') watchNextHmr();
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
      const appPort = port;
      const target = appAddr;
      inflight.set(appPort, (inflight.get(appPort) ?? 0) + 1);
      res.once('close', () => {
        const n = (inflight.get(appPort) ?? 1) - 1;
        if (n > 0) inflight.set(appPort, n);
        else {
          inflight.delete(appPort);
          drainWaiters.get(appPort)?.();
        }
      });
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
      hmrSocket?.close();
      metro?.close();
      const c = child;
      child = undefined;
      await reloading?.catch(() => {});
      await Promise.all([terminate(c), ...[...retiring].map(terminate)]);
      proxy.close();
    },
  };
}

/** Next's HMR messages that mean "an update went out to the browsers". */
const NEXT_UPDATES = new Set([
  'built',
  'sync',
  'serverComponentChanges',
  'clientChanges',
  'serverOnlyChanges',
]);

/** Next 16 serves its HMR socket at /_next/hmr; earlier releases at /_next/webpack-hmr. */
function nextHmrPath(projectDir: string): string {
  try {
    const { version } = JSON.parse(
      readFileSync(join(packageDir(projectDir, 'next'), 'package.json'), 'utf8'),
    );
    return Number(String(version).split('.')[0]) >= 16 ? '/_next/hmr' : '/_next/webpack-hmr';
  } catch {
    return '/_next/hmr';
  }
}

function argsFor(kind: ChildKind, projectDir: string, appPort: number): string[] {
  if (kind === 'expo') return expoArgs(projectDir, appPort);
  if (kind === 'next')
    return [
      join(packageDir(projectDir, 'next'), 'dist/bin/next'),
      'dev',
      '--webpack',
      '-p',
      String(appPort),
      '-H',
      '127.0.0.1',
    ];
  return [mainOf(projectDir)];
}

/**
 * Before `expo start`: Metro's caches from the image build (the template's transform cache) when
 * the project still has the template's dependencies, and the daemon's wrapper of the Metro config.
 */
function prepareExpo(opts: DevServerOptions): void {
  const tmp = metroTmpDir(opts.cacheDir);
  if (opts.prebuiltCacheDir && existsSync(opts.prebuiltCacheDir) && !existsSync(tmp))
    cpSync(opts.prebuiltCacheDir, tmp, { recursive: true });
  mkdirSync(tmp, { recursive: true });
  const config = metroConfigPath(opts.cacheDir);
  mkdirSync(dirname(config), { recursive: true });
  writeFileSync(config, metroConfigWrapper(opts.projectDir));
}

function mainOf(projectDir: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(projectDir, 'package.json'), 'utf8'));
    if (typeof pkg.main === 'string' && pkg.main) return pkg.main;
  } catch {}
  return 'server.js';
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function hostPort(u: Upstream): string {
  return u.host.includes(':') ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}
