import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { DevServer, DevServerOptions } from './dev-server.ts';
import { packageDir } from './load-package.ts';
import { probeHttp } from './vite-server.ts';

export type ChildKind = 'next' | 'node';

/** Files whose change a running Node server only sees after a restart (its code and config). */
export const NODE_CODE = /\.(?:[cm]?[jt]sx?|json|node)$/;

/**
 * A dev server in its own process on an internal loopback port, which the daemon proxies (HTTP and
 * WebSocket upgrades): `next dev` for Next.js, and `node <main>` for plain Node servers.
 *
 * A Node server is restarted by the daemon, not by `node --watch`: the daemon knows every file it
 * wrote. `reload()` starts a fresh process on a new port next to the running one and switches to it
 * once it takes connections, so requests keep being answered by the old code until the new code
 * can answer (no gap, no blank frame), and one process start is saved (`--watch` is a parent
 * process that starts the app as its child).
 */
export function childDevServer(kind: ChildKind, opts: DevServerOptions): DevServer {
  let child: ChildProcess | undefined;
  let port = 0;
  let hmrSocket: WebSocket | undefined;
  let stopping = false;
  let reloading: Promise<void> | undefined;
  let reloadAgain = false;
  /** Requests being proxied, by the app port they went to: an old process is stopped once it has none. */
  const inflight = new Map<number, number>();
  const drainWaiters = new Map<number, () => void>();
  /** Replaced processes still answering the requests they took. */
  const retiring = new Set<ChildProcess>();

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
    const args =
      kind === 'next'
        ? [
            join(packageDir(opts.projectDir, 'next'), 'dist/bin/next'),
            'dev',
            '--webpack',
            '-p',
            String(appPort),
            '-H',
            '127.0.0.1',
          ]
        : [mainOf(opts.projectDir)];
    const c = spawn(process.execPath, args, {
      cwd: opts.projectDir,
      env: {
        ...opts.env,
        PORT: String(appPort),
        HOST: '127.0.0.1',
        HOSTNAME: '127.0.0.1',
        NEXT_TELEMETRY_DISABLED: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    c.stdout!.on('data', onOutput);
    c.stderr!.on('data', onOutput);
    c.on('exit', (code, signal) => {
      if (child !== c) return;
      child = undefined;
      hmrSocket?.close();
      if (!stopping) opts.onExit(`dev server exited (${signal ?? `code ${code}`})`);
    });
    return c;
  };

  /** Resolves once `c` takes connections on `appPort`; false when it exited first. */
  const listening = async (c: ChildProcess, appPort: number): Promise<boolean> => {
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) return false;
      if (await canConnect(appPort)) return true;
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
    const next = spawnApp(nextPort);
    const up = await listening(next, nextPort);
    if (stopping) {
      void terminate(next);
      return;
    }
    // A new process that exits at once (a syntax error) replaces the old one too: the app is down,
    // and its output is what the status page shows, as it would be after any crash.
    child = up ? next : undefined;
    port = nextPort;
    // Requests the old process already took are answered by it before it stops.
    if (old) {
      retiring.add(old);
      void drained(oldPort, 10_000)
        .then(() => terminate(old))
        .finally(() => retiring.delete(old));
    }
    if (up) opts.tracker.sent('restart', true);
    else opts.onExit(`dev server exited (code ${next.exitCode ?? next.signalCode})`);
  };

  // Next's browser HMR socket: the daemon listens as one more client to learn when a build went out.
  const watchNextHmr = () => {
    if (stopping || !child) return;
    const ws = new WebSocket(`ws://127.0.0.1:${port}${nextHmrPath(opts.projectDir)}`);
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
      port = await freePort();
      const c = spawnApp(port);
      child = c;
      // Wait until it takes connections; readiness (200) is the daemon's probe.
      if (!(await listening(c, port)) || child !== c) throw new Error('dev server exited while starting');
      if (kind === 'next') watchNextHmr();
    },
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
      inflight.set(appPort, (inflight.get(appPort) ?? 0) + 1);
      res.once('close', () => {
        const n = (inflight.get(appPort) ?? 1) - 1;
        if (n > 0) inflight.set(appPort, n);
        else {
          inflight.delete(appPort);
          drainWaiters.get(appPort)?.();
        }
      });
      const upstream = request(
        { host: '127.0.0.1', port: appPort, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.rawHeaders as unknown as Record<string, string>);
          up.pipe(res);
        },
      );
      upstream.on('error', (e) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`dev server unreachable: ${e.message}`);
      });
      req.pipe(upstream);
    },
    upgrade(req, socket, head) {
      const up = connect(port, '127.0.0.1');
      up.on('connect', () => {
        let raw = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
        for (let i = 0; i < req.rawHeaders.length; i += 2)
          raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
        up.write(`${raw}\r\n`);
        if (head.length) up.write(head);
        up.pipe(socket);
        socket.pipe(up);
      });
      const end = () => {
        up.destroy();
        socket.destroy();
      };
      up.on('error', end);
      socket.on('error', end);
      up.on('close', end);
      socket.on('close', end);
      return true;
    },
    probe: () => probeHttp(port, 'localhost', 120_000),
    async close() {
      stopping = true;
      hmrSocket?.close();
      const c = child;
      child = undefined;
      await reloading?.catch(() => {});
      await Promise.all([terminate(c), ...[...retiring].map(terminate)]);
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
