/**
 * The `scale` bench's cluster on this machine: router replicas and pool agents as their own processes
 * (as deployed), on a fresh Postgres database and a Redis key prefix of their own, the agents'
 * sandboxes on the Docker engine with the real preview image. Everything it makes carries the run's
 * label (`preview.bench=<run>`) or name, and `close()` removes it: containers, the preview network and
 * its egress rules, the database, the Redis keys, the routers' data directory. The processes' output
 * is kept in `<tmpdir>/scale-<run>-logs/<name>.log`. Each router and agent leads its own session:
 * with the kernel's autogroup scheduling it gets a CPU share of its own, as a separately deployed
 * service does, instead of one share for the bench and all seven (measured at 100 previews: the
 * routers' event-loop delay p99 58 → 42 ms, the probe's API p99 142 → 84 ms).
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EgressFirewall } from '@preview/pool-agent';
import { signUserJwt } from '@preview/router';
import { type Proc, startAgentProcess, startRouterProcess, until } from '@preview/router/testkit/processes';
import {
  createTestDatabase,
  createTestRedis,
  TEST_LABEL,
  TEST_REDIS_URL,
  testDocker,
} from '@preview/testkit';
import { BENCH_LABEL } from './_agent.ts';

/** What the cluster is made of. */
export interface ClusterOptions {
  routers: number;
  agents: number;
  /** Previews (warm + claimed) each agent runs at most (`NODE_SLOTS`). */
  slotsPerAgent: number;
  /** The agents' `WARM_POOL`, e.g. `express-pg=4`. */
  warmPool: string;
  /** Users whose JWTs the bench creates previews with. */
  users: number;
  /** Router `MAX_LIVE_PREVIEWS_PER_USER`. */
  maxLivePerUser: number;
  /** Agent `PREVIEW_MEMORY_MIB` (each sandbox's limit). */
  memoryMiB: number;
  /** Agent `SANDBOX_CPU_SHARES`. @default the agent's default */
  sandboxCpuShares?: number;
  /** Progress lines on stderr. */
  say: (line: string) => void;
  /**
   * Node options for the router and agent processes (e.g. `--cpu-prof --cpu-prof-dir=<dir>`: each
   * writes a CPU profile when it exits). @default none
   */
  execArgv?: readonly string[];
}

/** One router replica: its process and base URL. */
export interface RouterNode {
  proc: Proc & { port: number };
  url: string;
}

/** One pool agent: its process, node name, API URL and the token the bench reads it with. */
export interface AgentNode {
  proc: Proc;
  name: string;
  url: string;
}

export type Cluster = Awaited<ReturnType<typeof startCluster>>;

/** The directory of host network interfaces: which bridges still exist (for the egress sweep). */
function interfaces(): Set<string> {
  try {
    return new Set(readdirSync('/sys/class/net'));
  } catch {
    return new Set();
  }
}

/** Removes every container labelled with the run, 8 at a time. Returns how many it removed. */
export async function removeRunContainers(run: string): Promise<number> {
  const docker = testDocker();
  const list = await docker.listContainers({ all: true, filters: { label: [`${BENCH_LABEL}=${run}`] } });
  let next = 0;
  const worker = async () => {
    for (let c = list[next++]; c; c = list[next++])
      await docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => {});
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return list.length;
}

/**
 * Starts `o.routers` router processes (one after the other: each migrates at start), then `o.agents`
 * agents registered alternately with each replica (one after the other: the first creates the
 * network). On failure everything started so far is removed before the error is rethrown.
 */
export async function startCluster(o: ClusterOptions) {
  const run = randomBytes(4).toString('hex');
  const network = `preview-net-scale-${run}`;
  const agentToken = `scale_${randomBytes(16).toString('hex')}`;
  const secret = randomBytes(32).toString('hex');
  const joinToken = randomBytes(16).toString('hex');
  const procs: Proc[] = [];
  const cleanup: Array<() => Promise<unknown>> = [];
  const logDir = join(tmpdir(), `scale-${run}-logs`);
  const close = async () => {
    for (const p of procs.reverse()) await p.stop(20_000).catch(() => {});
    // The processes' output stays for reading after the run (one file each).
    await mkdir(logDir, { recursive: true });
    for (const p of procs) await writeFile(join(logDir, `${p.name}.log`), `${p.lines.join('\n')}\n`);
    o.say(`scale: process logs in ${logDir}`);
    o.say(`scale: removed ${await removeRunContainers(run).catch(() => 0)} containers`);
    await testDocker()
      .getNetwork(network)
      .remove()
      .catch(() => {});
    const present = interfaces();
    await new EgressFirewall().sweep((bridge) => present.has(bridge)).catch(() => {});
    for (const c of cleanup.reverse()) await c().catch(() => {});
  };
  try {
    const db = await createTestDatabase({ max: 4 });
    cleanup.push(() => db.drop());
    const redis = createTestRedis();
    cleanup.push(() => redis.cleanup());
    const dataDir = await mkdtemp(join(tmpdir(), 'scale-'));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const env: Record<string, string> = {
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: redis.prefix,
      SUPABASE_JWT_SECRET: secret,
      PREVIEW_TOKEN_SECRET: `${secret}-p`,
      NODE_JOIN_TOKEN: joinToken,
      DATA_DIR: dataDir,
      MAX_LIVE_PREVIEWS_PER_USER: String(o.maxLivePerUser),
      RATE_LIMIT_USER_PER_MIN: '1000000',
      RATE_LIMIT_IP_PER_MIN: '1000000',
    };
    const routers: RouterNode[] = [];
    for (let i = 0; i < o.routers; i++) {
      const proc = await startRouterProcess(`scale-router-${i}`, env, o.execArgv ?? [], true);
      procs.push(proc);
      routers.push({ proc, url: `http://127.0.0.1:${proc.port}` });
    }
    o.say(`scale: ${routers.length} routers up`);
    const agents: AgentNode[] = [];
    for (let i = 0; i < o.agents; i++) {
      const name = `scale-${run}-${i}`;
      const proc = await startAgentProcess({
        name,
        routerUrl: routers[i % routers.length]!.url,
        joinToken,
        network,
        slots: o.slotsPerAgent,
        warmPool: o.warmPool,
        ownSession: true,
        ...(o.execArgv ? { execArgv: o.execArgv } : {}),
        env: {
          AGENT_TOKEN: agentToken,
          PREVIEW_LABELS: `${TEST_LABEL}=1,${BENCH_LABEL}=${run}`,
          PREVIEW_MEMORY_MIB: String(o.memoryMiB),
          ...(o.sandboxCpuShares === undefined ? {} : { SANDBOX_CPU_SHARES: String(o.sandboxCpuShares) }),
        },
      });
      procs.push(proc);
      const line = proc.lines.find((l) => l.includes('pool agent listening'));
      const url = String((JSON.parse(line ?? '{}') as { url?: string }).url);
      agents.push({ proc, name, url });
    }
    o.say(`scale: ${agents.length} agents up`);
    const users = await Promise.all(
      Array.from({ length: o.users }, async () => {
        const id = crypto.randomUUID();
        return { id, jwt: await signUserJwt({ secret, userId: id, ttlSeconds: 6 * 3600 }) };
      }),
    );
    /** An agent's own capacity answer (`GET /v1/capacity` with the run's agent token). */
    const capacity = async (a: AgentNode) =>
      (await (
        await fetch(`${a.url}/v1/capacity`, { headers: { authorization: `Bearer ${agentToken}` } })
      ).json()) as {
        slots: number;
        used: number;
        warm: Record<string, number>;
      };
    return {
      run,
      network,
      db,
      routers,
      agents,
      users,
      agentToken,
      capacity,
      /**
       * Resolves once every agent's warm pool of `template` holds `n` ready sandboxes, or as many as
       * its free slots allow; throws after `ms`.
       */
      async warmFull(template: string, n: number, ms = 600_000) {
        await until(
          `warm pools of ${template} to hold ${n}`,
          async () => {
            const all = await Promise.all(agents.map((a) => capacity(a).catch(() => undefined)));
            const full = (c: Awaited<ReturnType<typeof capacity>> | undefined) =>
              c !== undefined && (c.warm[template] ?? 0) >= Math.min(n, c.slots - c.used);
            return all.every(full) ? true : undefined;
          },
          ms,
        );
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
