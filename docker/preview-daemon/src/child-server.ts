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

/**
 * A dev server in its own process on an internal loopback port, which the daemon proxies (HTTP and
 * WebSocket upgrades): `next dev` for Next.js, `node --watch` for plain Node servers.
 */
export function childDevServer(kind: ChildKind, opts: DevServerOptions): DevServer {
  let child: ChildProcess | undefined;
  let port = 0;
  let hmrSocket: WebSocket | undefined;
  let stopping = false;

  const onOutput = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    opts.log.push(text);
    // node --watch prints this before it re-runs the entry; the update is out once it answers again.
    if (kind === 'node' && text.includes('Restarting ')) void reportRestart();
  };

  const reportRestart = async () => {
    for (let i = 0; i < 300 && child; i++) {
      const code = await probeHttp(port, 'localhost', 5_000);
      if (code !== 0) {
        opts.tracker.sent('restart', true);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
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

  return {
    get alive() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    async start() {
      stopping = false;
      port = await freePort();
      const args =
        kind === 'next'
          ? [
              join(packageDir(opts.projectDir, 'next'), 'dist/bin/next'),
              'dev',
              '--webpack',
              '-p',
              String(port),
              '-H',
              '127.0.0.1',
            ]
          : ['--watch', mainOf(opts.projectDir)];
      const env: Record<string, string> = {
        ...opts.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        HOSTNAME: '127.0.0.1',
        NEXT_TELEMETRY_DISABLED: '1',
      };
      const c = spawn(process.execPath, args, {
        cwd: opts.projectDir,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = c;
      c.stdout!.on('data', onOutput);
      c.stderr!.on('data', onOutput);
      c.on('exit', (code, signal) => {
        if (child !== c) return;
        child = undefined;
        hmrSocket?.close();
        if (!stopping) opts.onExit(`dev server exited (${signal ?? `code ${code}`})`);
      });
      // Wait until it takes connections; readiness (200) is the daemon's probe.
      for (;;) {
        if (child !== c) throw new Error('dev server exited while starting');
        if (await canConnect(port)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      if (kind === 'next') watchNextHmr();
    },
    handle(req, res) {
      const upstream = request(
        { host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers },
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
      if (!c || c.exitCode !== null) return;
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
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
