import { randomBytes, randomUUID } from 'node:crypto';
import { createDbIsolation } from '@preview/db-isolation';
import { createTestDatabase, createTestRedis, TEST_REDIS_URL, type TestDatabase } from '@preview/testkit';
import type { BrowserPlacements } from '@preview/tiers';
import pino, { type Logger } from 'pino';
import { signUserJwt } from '../src/auth/jwt.ts';
import { newCredential, sha256 } from '../src/auth/secrets.ts';
import { loadConfig } from '../src/config.ts';
import { migrate } from '../src/db/migrate.ts';
import type { EditorBuild } from '../src/editor-assets.ts';
import type { NodeDirectory } from '../src/node-directory.ts';
import type { Tiers } from '../src/previews.ts';
import { createRouter, type PreviewRouter } from '../src/router.ts';

export const silent = pino({ level: 'silent' });

export interface Harness {
  db: TestDatabase;
  router: PreviewRouter & { config: Record<string, string> };
  redis: import('ioredis').Redis | undefined;
  secret: string;
  joinToken: string;
  alice: { id: string; jwt: string; apiKey: string };
  bob: { id: string; jwt: string };
  nodeCredential: string;
  nodeId: string;
  /**
   * Another router on the same database (and Redis, if used): a second replica.
   * @param env settings of this replica only (e.g. its own PACKAGE_CACHE_DIR)
   */
  replica(env?: Record<string, string>): Promise<PreviewRouter>;
  close(): Promise<void>;
}

/**
 * A router on a fresh real Postgres database (and real Redis under a random prefix when `redis`),
 * with two users, a service key for alice and a registered node.
 */
export async function createHarness(
  o: {
    redis?: boolean;
    /** Another Redis than the machine's (implies `redis`): e.g. a private one the test restarts. */
    redisUrl?: string;
    tiers?: (ctx: { nodeDirectory: NodeDirectory; browserPlacements: BrowserPlacements }) => Tiers;
    env?: Record<string, string>;
    db?: TestDatabase;
    databases?: boolean;
    /** The editor page served at `/` (default: built on the first request, under DATA_DIR). */
    editor?: () => Promise<EditorBuild>;
    /** Run the router's scheduled jobs (idle, reconcile, ...) at the intervals of `env`. @default false */
    jobs?: boolean;
    /** The routers' logger. @default silent */
    log?: Logger;
  } = {},
): Promise<Harness> {
  const db = o.db ?? (await createTestDatabase({ max: 20 }));
  // Dropping the database at teardown terminates idle connections; that is expected.
  db.pool.on('error', () => {});
  await migrate(db.pool);
  const secret = randomBytes(32).toString('hex');
  const joinToken = randomBytes(16).toString('hex');
  const r = o.redis || o.redisUrl ? createTestRedis(o.redisUrl ? { url: o.redisUrl } : {}) : undefined;
  const env: Record<string, string> = {
    SUPABASE_JWT_SECRET: secret,
    PREVIEW_TOKEN_SECRET: `${secret}-preview`,
    NODE_JOIN_TOKEN: joinToken,
    ...(r ? { REDIS_URL: o.redisUrl ?? TEST_REDIS_URL, REDIS_PREFIX: r.prefix } : {}),
    ...o.env,
  };
  const config = loadConfig(env);
  const databases = o.databases
    ? createDbIsolation({ admin: db.pool, previewDatabaseUrl: db.url })
    : undefined;
  await databases?.prepare();
  const routers: PreviewRouter[] = [];
  const tiersMade: Tiers[] = [];
  let nodeId: string | undefined;
  const adopt = (tiers: Tiers) => {
    for (const t of Object.values(tiers))
      if (t && nodeId && 'nodeId' in t) (t as { nodeId: string }).nodeId = nodeId;
  };
  const make = async (replicaEnv?: Record<string, string>) => {
    const router = await createRouter({
      config: replicaEnv ? loadConfig({ ...env, ...replicaEnv }) : config,
      pool: db.pool,
      redis: r?.redis,
      tiers: o.tiers ?? {},
      databases,
      log: o.log ?? silent,
      jobs: o.jobs ?? false,
      ...(o.editor ? { editor: o.editor } : {}),
    });
    adopt(router.tiers);
    tiersMade.push(router.tiers);
    routers.push(router);
    return router;
  };
  const router = await make();
  const alice = { id: randomUUID(), jwt: '', apiKey: newCredential('pk_') };
  alice.jwt = await signUserJwt({ secret, userId: alice.id });
  const bob = { id: randomUUID(), jwt: '' };
  bob.jwt = await signUserJwt({ secret, userId: bob.id });
  await db.pool.query(`INSERT INTO api_keys (user_id, name, key_hash) VALUES ($1, 'ci', $2)`, [
    alice.id,
    sha256(alice.apiKey),
  ]);
  const reg = await router.nodes.register({
    joinToken,
    name: `node-${randomBytes(3).toString('hex')}`,
    url: 'http://127.0.0.1:1',
    capacity: { slots: 4, used: 0, warm: {} },
    runtime: 'process',
  });
  nodeId = reg.nodeId;
  for (const t of tiersMade) adopt(t);
  return {
    db,
    router: Object.assign(router, { config: env }),
    redis: r?.redis,
    secret,
    joinToken,
    alice,
    bob,
    nodeCredential: reg.credential,
    nodeId: reg.nodeId,
    replica: make,
    async close() {
      for (const x of routers) await x.close().catch(() => {});
      for (const t of tiersMade) for (const tier of Object.values(t)) await tier?.close().catch(() => {});
      await r?.cleanup();
      if (!o.db) await db.drop();
    },
  };
}

export const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

export const VITE_FILES = {
  'package.json': JSON.stringify({
    name: 'v',
    private: true,
    scripts: { dev: 'vite' },
    devDependencies: { vite: '^8' },
  }),
  'index.html':
    '<!doctype html><html><body><h1>hi</h1><script type="module" src="/main.js"></script></body></html>',
  'main.js': 'console.log(1)',
};
