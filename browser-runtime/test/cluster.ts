/**
 * TEST ONLY: a small real cluster on this machine for failover tests: router replicas as their own
 * processes on the test's Postgres database and a Redis, a loopback load balancer in front of them,
 * and one pool agent process on the Docker engine; an editor (PreviewClient over the balancer) that
 * types edits and remembers the project as it should be.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHarness, type Harness } from '@preview/router/testkit/harness';
import {
  hostGet,
  type Proc,
  startAgentProcess,
  startFailoverBalancer,
  startRouterProcess,
  until,
} from '@preview/router/testkit/processes';
import { TEST_LABEL, testDocker } from '@preview/testkit';
import { WebSocket } from 'ws';
import { PreviewClient } from '../src/client/preview-client.ts';
import type { SyncSession } from '../src/client/sync-session.ts';
import type { WebSocketConstructor } from '../src/client/transport.ts';

export const CLUSTER_FILES = {
  'index.html':
    '<!doctype html><html><body><div id="app"></div><script type="module" src="/main.js"></script></body></html>',
  'main.js': 'document.querySelector("#app").textContent = "failover";\n',
  'notes/start.txt': 'stored at create\n',
};

/** The shared test network of the agents (node-loss.int.test uses it too). */
const NETWORK = 'preview-net-test';

/**
 * Starts the cluster: `replicas` router processes (first one first in the balancer), then the agent
 * (registered through the balancer; it heartbeats every HEARTBEAT_MS the router tells it at
 * registration). `redisUrl` (with `redisPrefix`) replaces the shared test Redis.
 */
export async function startCluster(o: {
  replicas: number;
  redisUrl?: string;
  redisPrefix?: string;
  /** Router variables over the defaults (heartbeat 1 s, node TTL 4 s, reconcile every 1 s). */
  env?: Record<string, string>;
}) {
  const h: Harness = await createHarness({ redis: !o.redisUrl });
  // Only the agent process places: the harness's registered node is forgotten.
  await h.router.nodes.liveness.forget(h.nodeId);
  const cfg = h.router.config;
  const dataDir = await mkdtemp(join(tmpdir(), 'cluster-'));
  const env: Record<string, string> = {
    DATABASE_URL: h.db.url,
    REDIS_URL: o.redisUrl ?? String(cfg['REDIS_URL']),
    REDIS_PREFIX: o.redisPrefix ?? String(cfg['REDIS_PREFIX']),
    SUPABASE_JWT_SECRET: String(cfg['SUPABASE_JWT_SECRET']),
    PREVIEW_TOKEN_SECRET: String(cfg['PREVIEW_TOKEN_SECRET']),
    NODE_JOIN_TOKEN: h.joinToken,
    DATA_DIR: dataDir,
    HEARTBEAT_MS: '1000',
    NODE_TTL_MS: '4000',
    RECONCILE_MS: '1000',
    ...o.env,
  };
  const routers: Array<Proc & { port: number }> = [];
  const procs: Proc[] = [];
  const agentName = `fo-${randomBytes(4).toString('hex')}`;
  let lb: Awaited<ReturnType<typeof startFailoverBalancer>> | undefined;
  const close = async () => {
    for (const p of procs.reverse()) await p.stop().catch(() => {});
    await lb?.close();
    const docker = testDocker();
    for (const c of await docker
      .listContainers({ all: true, filters: { label: [`preview.node=${agentName}`, `${TEST_LABEL}=1`] } })
      .catch(() => []))
      await docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => {});
    await h.close();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    // One after the other: each runs the migrations at start.
    for (let i = 0; i < o.replicas; i++) {
      const r = await startRouterProcess(`router-${String.fromCharCode(97 + i)}`, env);
      routers.push(r);
      procs.push(r);
    }
    lb = await startFailoverBalancer(routers.map((r) => r.port));
    const agent = await startAgentProcess({
      name: agentName,
      routerUrl: lb.url,
      joinToken: h.joinToken,
      network: NETWORK,
      slots: 2,
    });
    procs.push(agent);
    const balancer = lb;
    const client = (baseUrl = balancer.url) =>
      new PreviewClient({
        baseUrl,
        token: h.alice.jwt,
        WebSocket: WebSocket as unknown as WebSocketConstructor,
      });
    return {
      h,
      routers,
      agent,
      lb: balancer,
      client,
      /** Creates a docker preview once the agent's warm sandbox is there (until then the create is refused). */
      async createPreview() {
        return until(
          'a docker preview',
          async () => {
            const p = await client()
              .create({ files: CLUSTER_FILES, serverOnly: true })
              .catch(() => undefined);
            return p?.tier === 'docker' ? p : undefined;
          },
          300_000,
        );
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

export type Cluster = Awaited<ReturnType<typeof startCluster>>;

/** An editor on a sync session: every edit writes two files, and `state` is the project it expects. */
export function typingEditor(sync: SyncSession) {
  const state = new Map<string, string>(Object.entries(CLUSTER_FILES));
  let typed = 0;
  const edit = (tag: string) => {
    const n = typed++;
    const put = (path: string, content: string) => {
      state.set(path, content);
      sync.write(path, content);
    };
    put(`notes/n${n % 4}.txt`, `${tag} ${n}\n`);
    // A file no later edit touches: its loss shows at the end.
    put(`notes/e-${n}.txt`, `${tag} ${n} kept\n`);
    sync.flush();
  };
  let running = false;
  let loop: Promise<void> = Promise.resolve();
  return {
    state,
    edit,
    get typed() {
      return typed;
    },
    /** Types one edit every `ms` until `stop()`. */
    start(tag: string, ms = 100) {
      running = true;
      loop = (async () => {
        while (running) {
          edit(tag);
          await new Promise((r) => setTimeout(r, ms));
        }
      })();
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** Resolves when every write so far is persisted; throws after `ms`. */
export async function persisted(sync: SyncSession, ms = 240_000) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    sync.whenPersisted(),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`edits not persisted within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The project as router `port` shows it: `project_files` of the preview, and each of `paths` as the
 * sandbox serves it through that router's preview proxy.
 */
export async function projectAsServed(c: Cluster, id: string, port: number, paths: string[]) {
  const stored = await c.h.router.previews.store.loadFiles(id);
  const files = Object.fromEntries(
    Object.entries(stored).map(([p, v]) => [p, typeof v === 'string' ? v : v.content]),
  );
  const view = await c.client(`http://127.0.0.1:${port}`).get(id);
  const token = new URL(String(view.previewUrl)).searchParams.get('token')!;
  const host = `${id}.preview.localhost`;
  const redirect = await hostGet(port, `/?token=${token}`, { host });
  const cookie = String(redirect.headers['set-cookie']?.[0]).split(';')[0]!;
  const served: Record<string, string> = {};
  for (const path of paths) {
    const r = await hostGet(port, `/${path}`, { host, cookie, 'sec-fetch-dest': 'empty' });
    served[path] = r.status === 200 ? r.body : `HTTP ${r.status}`;
  }
  return { files, served };
}
