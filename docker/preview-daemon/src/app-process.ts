import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { listeningSockets, type Upstream } from './app-port.ts';
import { expoArgs, expoEnv } from './expo-metro.ts';
import { packageDir } from './load-package.ts';
import type { LogRing } from './log.ts';

export type ChildKind = 'next' | 'node' | 'expo';

/**
 * The command line of the app's process, run with this Node: `next dev --webpack` on `appPort`
 * bound to 127.0.0.1 for Next.js, `expo start` (Metro, web target) for Expo, else the package's
 * `main` (default `server.js`).
 */
export function appArgs(kind: ChildKind, projectDir: string, appPort: number): string[] {
  if (kind === 'expo') return expoArgs(projectDir, appPort);
  return kind === 'next'
    ? [
        join(packageDir(projectDir, 'next'), 'dist/bin/next'),
        'dev',
        '--webpack',
        '-p',
        String(appPort),
        '-H',
        '127.0.0.1',
      ]
    : [mainOf(projectDir)];
}

/**
 * Starts the app's process. It is told where to listen (PORT, HOST: what hosting platforms set); one
 * that listens elsewhere is found by its sockets (see {@link waitListening}). Its output goes to
 * `onOutput`.
 */
export function spawnApp(
  kind: ChildKind,
  o: { projectDir: string; env: Record<string, string>; cacheDir: string },
  appPort: number,
  onOutput: (chunk: Buffer) => void,
): ChildProcess {
  const env = {
    ...o.env,
    PORT: String(appPort),
    HOST: kind === 'next' ? '127.0.0.1' : '0.0.0.0',
    HOSTNAME: '127.0.0.1',
    NEXT_TELEMETRY_DISABLED: '1',
  };
  const c = spawn(process.execPath, appArgs(kind, o.projectDir, appPort), {
    cwd: o.projectDir,
    env: kind === 'expo' ? expoEnv(env, o.cacheDir) : env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  c.stdout!.on('data', onOutput);
  c.stderr!.on('data', onOutput);
  return c;
}

/** `the app exited with code 1` and the log's last lines (`LogRing.lastLines`: a crash's error kept). */
export function exitText(
  log: Pick<LogRing, 'lastLines'>,
  code: number | null,
  signal: NodeJS.Signals | null,
  what: string,
): string {
  const lines = log.lastLines();
  return `the app ${what} with ${signal ? `signal ${signal}` : `code ${code}`}${lines.length ? `; last lines:\n${lines.join('\n')}` : ''}`;
}

/**
 * Where `c` takes connections: on `appPort` (its PORT), or on a port it opened itself (found from
 * its sockets in /proc, checked every 50 ms). `undefined` when it exited first.
 * @throws Error naming the port expected, after `o.readyTimeoutMs` without a listening port.
 */
export async function waitListening(
  c: ChildProcess,
  appPort: number,
  o: { readyTimeoutMs: number; log: Pick<LogRing, 'push' | 'lastLines'> },
): Promise<Upstream | undefined> {
  const deadline = Date.now() + o.readyTimeoutMs;
  for (let i = 1; ; i++) {
    if (c.exitCode !== null || c.signalCode !== null) return undefined;
    if (await canConnect(appPort)) return { host: '127.0.0.1', port: appPort };
    if (i % 5 === 0 && c.pid !== undefined) {
      const own = listeningSockets(c.pid)[0];
      if (own && c.exitCode === null) {
        o.log.push(`the app listens on port ${own.port} (it was given PORT=${appPort}); proxying to it`);
        return own;
      }
    }
    if (Date.now() > deadline) {
      const lines = o.log.lastLines();
      throw new Error(
        `the app opened no port within ${Math.round(o.readyTimeoutMs / 1000)} s (it was given PORT=${appPort} and listens on none)${lines.length ? `; last lines:\n${lines.join('\n')}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process exited (at once if it had). */
export function terminate(c: ChildProcess | undefined): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 5_000);
  return exited.finally(() => clearTimeout(t));
}

/** The package's `main`, or `server.js` when there is none (or no readable package.json). */
export function mainOf(projectDir: string): string {
  try {
    const pkg = JSON.parse(readFileSync(join(projectDir, 'package.json'), 'utf8'));
    if (typeof pkg.main === 'string' && pkg.main) return pkg.main;
  } catch {}
  return 'server.js';
}

/** A loopback port free now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** `host:port`, the host in brackets when it is IPv6. */
export function hostPort(u: Upstream): string {
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
