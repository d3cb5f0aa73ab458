/**
 * TEST ONLY: the router and the pool agent as real processes (`node --import tsx <pkg>/src/main.ts`,
 * as deployed), a loopback load balancer that fails over between router replicas, and the polling
 * helpers the failover tests share.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { resolve } from 'node:path';
import { TEST_LABEL, TEST_PREVIEW_IMAGE } from '@preview/testkit';
import { HOST_CA } from './docker-node.ts';

const REPO = resolve(import.meta.dirname, '../..');

/** One child process and what it printed (pino JSON lines, stdout and stderr). */
export interface Proc {
  name: string;
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
  /** SIGKILL: no shutdown handler runs, sockets are reset by the kernel, jobs stop mid-flight. */
  kill9(): Promise<void>;
  /** SIGTERM, then SIGKILL after `ms`. @default ms 30000 */
  stop(ms?: number): Promise<void>;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` every 100 ms until it returns a value other than undefined; throws after `ms` naming `what`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 240_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * Spawns `entry` with tsx. `ownSession`: the child leads its own session, so on a kernel with
 * `sched_autogroup_enabled` it is scheduled as its own group, as a separately deployed service would
 * be, not in one group with its parent and siblings; it is not killed with the parent's terminal.
 */
function startProcess(
  name: string,
  entry: string,
  env: Record<string, string>,
  execArgv: readonly string[] = [],
  ownSession = false,
): Proc {
  const child = spawn(process.execPath, [...execArgv, '--import', 'tsx', entry], {
    cwd: REPO,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownSession,
  });
  const lines: string[] = [];
  const collect = (d: Buffer) => lines.push(...d.toString('utf8').split('\n').filter(Boolean));
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    name,
    child,
    lines,
    exited,
    async kill9() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
    async stop(ms = 30_000) {
      if (alive()) child.kill('SIGTERM');
      await Promise.race([exited, sleep(ms)]);
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Waits for the pino line with message `msg` and returns it parsed; throws if the process exits first. */
export function logLine(p: Proc, msg: string, ms = 240_000): Promise<Record<string, unknown>> {
  return until(
    `${p.name}: "${msg}"`,
    async () => {
      for (const l of p.lines) {
        if (!l.includes(msg)) continue;
        try {
          const j = JSON.parse(l) as Record<string, unknown>;
          if (j['msg'] === msg) return j;
        } catch {
          // not a JSON line
        }
      }
      if (p.child.exitCode !== null || p.child.signalCode !== null)
        throw new Error(`${p.name} exited: ${p.lines.slice(-20).join('\n')}`);
      return undefined;
    },
    ms,
  );
}

/**
 * A router replica as its own process (`router/src/main.ts`), no embedded agent, on a free loopback
 * port; resolves once it listens, with its port. `env` carries DATABASE_URL, REDIS_URL, the secrets
 * and any interval; `execArgv` are Node options before the entry (e.g. `--cpu-prof`); `ownSession`
 * as in `startProcess` (benches: each replica scheduled apart, as deployed). @default ownSession false
 */
export async function startRouterProcess(
  name: string,
  env: Record<string, string>,
  execArgv: readonly string[] = [],
  ownSession = false,
): Promise<Proc & { port: number }> {
  const p = startProcess(
    name,
    'router/src/main.ts',
    {
      HOST: '127.0.0.1',
      PORT: '0',
      EMBEDDED_AGENT: 'false',
      LOG_LEVEL: 'info',
      ...env,
    },
    execArgv,
    ownSession,
  );
  const line = await logLine(p, 'router listening');
  return Object.assign(p, { port: Number(new URL(String(line['url'])).port) });
}

/**
 * A pool agent as its own process (`pool-agent/src/main.ts`) on the Docker engine, registered with
 * the router at `routerUrl`; its sandboxes carry the test sweep label. Resolves once it listens.
 * `env` adds or overrides agent variables (e.g. `PREVIEW_LABELS`, `PREVIEW_MEMORY_MIB`, `AGENT_TOKEN`);
 * `execArgv` are Node options before the entry (e.g. `--cpu-prof`); `ownSession` as in `startProcess`.
 * @default o.slots 3, o.warmPool 'vite-vanilla=1', o.ownSession false
 */
export async function startAgentProcess(o: {
  name: string;
  routerUrl: string;
  joinToken: string;
  network: string;
  slots?: number;
  warmPool?: string;
  env?: Record<string, string>;
  execArgv?: readonly string[];
  ownSession?: boolean;
}): Promise<Proc> {
  const p = startProcess(
    o.name,
    'pool-agent/src/main.ts',
    {
      ROUTER_URL: o.routerUrl,
      ROUTER_JOIN_TOKEN: o.joinToken,
      NODE_NAME: o.name,
      AGENT_PORT: '0',
      PREVIEW_IMAGE: TEST_PREVIEW_IMAGE,
      PREVIEW_NETWORK: o.network,
      PREVIEW_LABELS: `${TEST_LABEL}=1`,
      NODE_SLOTS: String(o.slots ?? 3),
      WARM_POOL: o.warmPool ?? 'vite-vanilla=1',
      PREVIEW_MEMORY_MIB: '768',
      PREVIEW_DISK_BACKEND: 'none',
      PREVIEW_NODE_EXTRA_CA_CERTS: HOST_CA,
      READY_TIMEOUT_MS: '240000',
      LOG_LEVEL: 'info',
      ...o.env,
    },
    o.execArgv,
    o.ownSession,
  );
  await logLine(p, 'pool agent listening');
  return p;
}

/**
 * A TCP load balancer on a loopback port in front of router replicas: each connection goes to the
 * first upstream port that accepts it (a replica that is gone refuses, and the next one is tried).
 * `served` counts the connections each upstream took.
 */
export async function startFailoverBalancer(upstreams: number[]) {
  const served = new Map<number, number>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    const attempt = (i: number) => {
      const port = upstreams[i];
      if (port === undefined) return client.destroy();
      const up = net.connect({ host: '127.0.0.1', port });
      up.once('error', () => (up.remoteAddress ? client.destroy() : attempt(i + 1)));
      up.once('connect', () => {
        served.set(port, (served.get(port) ?? 0) + 1);
        sockets.add(up);
        up.on('close', () => {
          sockets.delete(up);
          client.destroy();
        });
        up.on('error', () => client.destroy());
        client.on('error', () => up.destroy());
        client.on('close', () => up.destroy());
        client.pipe(up);
        up.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    served,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A GET with an explicit Host (the preview proxy), on a loopback port. */
export function hostGet(port: number, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((ok, fail) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

/** A free loopback TCP port (listened on and released: another process could take it meanwhile). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * A private `redis-server` on a loopback port, without persistence (as the test env's Redis): a
 * restart loses every key, as a Redis without a disk does. `stop()` then `start()` restarts it on
 * the same port; `cli(...)` runs `redis-cli` against it and returns its output.
 */
export async function startPrivateRedis() {
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  const cli = (...args: string[]) =>
    new Promise<string>((ok, fail) => {
      const c = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      c.once('error', fail);
      c.once('exit', () => ok(out.trim()));
    });
  const start = async () => {
    proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    const p = proc;
    exited = new Promise((r) => p.once('exit', r));
    await until(
      `redis-server on ${port}`,
      async () => ((await cli('ping')) === 'PONG' ? true : undefined),
      30_000,
    );
  };
  const stop = async () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  await start();
  return { port, url: `redis://127.0.0.1:${port}`, start, stop, cli };
}
