import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import {
  createMemoryPubSub,
  createMemorySyncState,
  createRouter,
  createSyncHub,
  createSyncUpgradeHandler,
  loadConfig,
  migrate,
  openWebSocketChannel,
  signUserJwt,
} from '@preview/router';
import { startDirectorySandbox } from '@preview/router/testkit/sync';
import { createTestDatabase } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import pino from 'pino';

/**
 * A real router (REST API, auth, Postgres) with the real sync hub on its upgrade path, whose sandbox
 * side is the directory test sandbox. `extra` serves additional paths (a test page) from the same
 * origin.
 */
export async function startRouterWithSync(
  o: {
    extra?: (req: Request) => Response | undefined;
    /** The bundler runtime's files, served by the router on `bundler.preview.localhost`. */
    runtimeAssets?: () => Promise<Map<string, string | Uint8Array>>;
  } = {},
) {
  const db = await createTestDatabase({ max: 10 });
  db.pool.on('error', () => {});
  await migrate(db.pool);
  const secret = randomBytes(32).toString('hex');
  const log = pino({ level: 'silent' });
  const config = loadConfig({
    SUPABASE_JWT_SECRET: secret,
    PREVIEW_TOKEN_SECRET: `${secret}-preview`,
    NODE_JOIN_TOKEN: randomBytes(16).toString('hex'),
  });
  const router = await createRouter({
    config,
    pool: db.pool,
    tiers: { browser: createBrowserTier() },
    log,
    jobs: false,
    ...(o.runtimeAssets ? { runtimeAssets: o.runtimeAssets } : {}),
  });
  const dir = await mkdtemp(join(tmpdir(), 'client-sandbox-'));
  const sandbox = await startDirectorySandbox({ dir });
  const hub = createSyncHub({
    pool: db.pool,
    pubsub: createMemoryPubSub(),
    state: createMemorySyncState(),
    log,
    openChannel: () => openWebSocketChannel({ url: sandbox.url }),
  });
  const upgrade = createSyncUpgradeHandler({ hub, auth: router.auth, store: router.store });
  router.addUpgradeHandler(upgrade);
  const server = (await new Promise((resolve) => {
    const s = serve(
      {
        fetch: (req: Request) => o.extra?.(req) ?? router.app.fetch(req),
        hostname: '127.0.0.1',
        port: 0,
      },
      () => resolve(s as Server),
    );
  })) as Server;
  router.attach(server);
  const port = (server.address() as { port: number }).port;
  const userId = randomUUID();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    db,
    hub,
    sandbox,
    jwt: await signUserJwt({ secret, userId }),
    otherJwt: await signUserJwt({ secret, userId: randomUUID() }),
    userId,
    async dbFiles(previewId: string): Promise<Record<string, string>> {
      const r = await db.pool.query<{ path: string; content: Buffer }>(
        'SELECT path, content FROM project_files WHERE preview_id = $1 ORDER BY path',
        [previewId],
      );
      return Object.fromEntries(r.rows.map((x) => [x.path, x.content.toString('utf8')]));
    },
    async sandboxFiles(): Promise<Record<string, string>> {
      return Object.fromEntries([...(await sandbox.files())].sort().map(([p, c]) => [p, c.toString('utf8')]));
    },
    /** Drops every sync socket (as a router restart would). */
    dropSockets() {
      upgrade.dropAll();
    },
    async close() {
      upgrade.close();
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      await hub.close();
      await router.close();
      await sandbox.close();
      await rm(dir, { recursive: true, force: true });
      await db.drop();
    },
  };
}
export type RouterWithSync = Awaited<ReturnType<typeof startRouterWithSync>>;
