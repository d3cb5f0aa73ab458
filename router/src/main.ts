import { resolve } from 'node:path';
import { serve } from '@hono/node-server';
import { createDbIsolation } from '@preview/db-isolation';
import type { Agent } from '@preview/pool-agent';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import { createFlyTier, flyTierOptions, loadFlyConfig } from '@preview/tiers/fly';
import { createClient } from '@supabase/supabase-js';
import { Redis } from 'ioredis';
import pino from 'pino';
import { WebSocket } from 'ws';
import { signUserJwt } from './auth/jwt.ts';
import { loadConfig } from './config.ts';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from './db/embedded-postgres.ts';
import { migrate } from './db/migrate.ts';
import { createRouterPool } from './db/pool.ts';
import { bundlerAssetsFromRepo, editorFromConfig } from './editor-assets.ts';
import { embeddedNodeName, startEmbeddedAgent } from './embedded-agent.ts';
import { trackInflight } from './inflight.ts';
import { loadLocalSecrets } from './local-secrets.ts';
import type { Tiers } from './previews.ts';
import { createRouter } from './router.ts';

const env = loadConfig(process.env);
const flyConfig = loadFlyConfig(process.env);
const log = pino({ level: env.LOG_LEVEL });

// Embedded defaults: secrets generated once under DATA_DIR when not configured.
const secrets = await loadLocalSecrets(resolve(env.DATA_DIR, 'local-secrets.json'));
const embeddedAuth = !env.SUPABASE_JWT_SECRET && !env.SUPABASE_JWKS_URL;
const config = {
  ...env,
  SUPABASE_JWT_SECRET: embeddedAuth ? secrets.jwtSecret : env.SUPABASE_JWT_SECRET,
  PREVIEW_TOKEN_SECRET: env.PREVIEW_TOKEN_SECRET ?? secrets.previewTokenSecret,
  NODE_JOIN_TOKEN: env.NODE_JOIN_TOKEN ?? secrets.joinToken,
};

let embedded: EmbeddedPostgresHandle | undefined;
let databaseUrl = config.DATABASE_URL;
if (!databaseUrl) {
  const dataDir = resolve(config.DATA_DIR, 'postgres');
  log.info({ dataDir }, 'DATABASE_URL unset: starting embedded Postgres');
  embedded = await startEmbeddedPostgres({ dataDir, log });
  databaseUrl = embedded.url;
}

// A connection that dies (Postgres restarted, a failover) must not take the router down with it.
const pool = createRouterPool(databaseUrl, log, config.DATABASE_POOL_MAX);
// The editors' write-behind has its own connections: under an edit storm, API reads do not queue
// behind hundreds of previews' flushes (scale bench: API p99 2.5 s at 500 previews with one pool).
const syncPool = createRouterPool(databaseUrl, log, config.DATABASE_SYNC_POOL_MAX);
const migrations = await migrate(pool, config.MIGRATIONS_DIR ? { dir: config.MIGRATIONS_DIR } : {});
log.info(migrations, 'migrations');

const redis = config.REDIS_URL ? new Redis(config.REDIS_URL, { maxRetriesPerRequest: 3 }) : undefined;
// ioredis reconnects by itself; without a listener each failed attempt is an unstructured
// "Unhandled error event" on stderr. Requests meanwhile answer 503 `unavailable` (http-errors.ts).
redis?.on('error', (err) => log.warn({ err, dependency: 'redis' }, 'Redis connection error'));
let tiers: Tiers = {};

// Per-preview schemas live in the router's database; previews reach it at PREVIEW_DATABASE_URL.
const previewDbUrl = new URL(config.PREVIEW_DATABASE_URL ?? databaseUrl);
previewDbUrl.username = '';
previewDbUrl.password = '';
const databases = createDbIsolation({
  admin: pool,
  previewDatabaseUrl: previewDbUrl.toString(),
  trustedRoles: config.PREVIEW_DB_TRUSTED_ROLES,
  log,
});
await databases.prepare();

// Supabase Realtime as a sync transport, when configured: the bridges join preview channels with
// the service-role key (Node 20 has no global WebSocket; realtime-js takes `ws`'s).
const supabase =
  config.SUPABASE_URL && config.SUPABASE_SERVICE_ROLE_KEY
    ? createClient(config.SUPABASE_URL, config.SUPABASE_SERVICE_ROLE_KEY, {
        auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
        realtime: { transport: WebSocket as never },
      })
    : undefined;

// The editor page (served at `/`): built now when missing or stale, so the first visit finds it.
const editor = editorFromConfig(config, log);
const editorReady = editor().catch((err: unknown) => {
  log.error({ err }, 'the editor page could not be built: `/` retries on the next request');
});

const router = await createRouter({
  config,
  editor,
  // The browser tier's runtime host (bundler.<PREVIEW_DOMAIN>): built from the repo on first use.
  ...(config.BUNDLER_ASSETS_DIR ? {} : { runtimeAssets: () => bundlerAssetsFromRepo(log) }),
  pool,
  syncPool,
  redis,
  // The docker tier reaches every registered pool agent (the embedded one included) via the node table.
  tiers: ({ nodeDirectory, browserPlacements }) => {
    tiers = {
      browser: createBrowserTier({ placements: browserPlacements }),
      docker: createDockerTier(nodeDirectory),
    };
    // The fly tier is on when FLY_API_TOKEN is set (its variables: tiers/src/fly/config.ts).
    if (flyConfig) tiers.fly = createFlyTier(flyTierOptions(flyConfig));
    return tiers;
  },
  databases,
  log,
  defaultMetrics: true,
  realtime: supabase && {
    client: supabase,
    private: config.SUPABASE_REALTIME_PRIVATE,
    maxMessageBytes: config.SUPABASE_REALTIME_MAX_MESSAGE_BYTES,
  },
});
if (supabase) log.info({ url: config.SUPABASE_URL }, 'Supabase Realtime sync transport on');
// Settles with the embedded agent (or undefined when it failed); shutdown waits for it, so a stop
// while the agent is still starting does not leave the warm sandboxes it is making behind.
let agentStarting: Promise<Agent | undefined> = Promise.resolve(undefined);
// A shutdown waits for the requests being answered (a create half-way through its placement)
// before it closes the pool they write with.
const inflight = trackInflight(router.app.fetch);
/** How long a shutdown waits for requests being answered, ms. */
const SHUTDOWN_GRACE_MS = 10_000;
const server = serve({ fetch: inflight.fetch, hostname: config.HOST, port: config.PORT }, async (info) => {
  const url =
    config.PUBLIC_URL ?? `http://${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${info.port}`;
  log.info({ url }, 'router listening');
  if (config.EMBEDDED_AGENT) {
    agentStarting = startEmbeddedAgent({
      nodeName: embeddedNodeName(config.DATA_DIR),
      routerUrl: `http://127.0.0.1:${info.port}`,
      joinToken: config.NODE_JOIN_TOKEN,
      image: config.PREVIEW_IMAGE,
      logLevel: config.LOG_LEVEL,
      ...(config.PREVIEW_NODE_EXTRA_CA_CERTS ? { extraCaCerts: config.PREVIEW_NODE_EXTRA_CA_CERTS } : {}),
      ...(config.NODE_EXTRA_CA_CERTS ? { npmCaCerts: config.NODE_EXTRA_CA_CERTS } : {}),
      dataDir: config.DATA_DIR,
      ...(config.EMBEDDED_AGENT_RUNTIME !== 'auto' ? { runtime: config.EMBEDDED_AGENT_RUNTIME } : {}),
      log,
    }).catch((err: unknown) => {
      log.error({ err }, 'embedded pool agent failed to start: only the browser tier is available');
      return undefined;
    });
    const agent = await agentStarting;
    // The agent runs in this process: the preview proxy goes straight to its sandboxes.
    if (agent) router.proxy.setLocalAgent({ nodeId: agent.nodeId, upstream: (id) => agent.upstream(id) });
  }
  let tokenLine = '';
  await editorReady;
  const installs = (await agentStarting)?.templates;
  const pending = installs?.templates.filter((t) => !installs.isInstalled(t)) ?? [];
  if (pending.length)
    tokenLine += `  templates: installing ${pending.join(', ')} (progress in the log; their previews start once installed)\n`;
  if (embeddedAuth) {
    const token = await signUserJwt({
      secret: secrets.jwtSecret,
      userId: secrets.localUserId,
      ttlSeconds: 30 * 24 * 3600,
    });
    tokenLine += `  local access token (user ${secrets.localUserId}):\n  ${token}\n  editor: ${url}/#token=${token}\n`;
  }
  process.stdout.write(
    `\nPreview router ready at ${url}\n  health: ${url}/readyz\n  API reference: ${url}/docs\n${tokenLine}\n`,
  );
});
router.attach(server as unknown as import('node:http').Server);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'shutting down');
  server.close();
  if (!(await inflight.drained(SHUTDOWN_GRACE_MS)))
    log.warn(
      { requests: inflight.size },
      `requests still being answered after ${SHUTDOWN_GRACE_MS} ms; closing anyway`,
    );
  await (await agentStarting)?.close({ removeSandboxes: true }).catch(() => {});
  await router.close().catch(() => {});
  await supabase?.realtime.disconnect();
  for (const t of Object.values(tiers)) await t?.close().catch(() => {});
  redis?.disconnect();
  await pool.end().catch(() => {});
  await syncPool.end().catch(() => {});
  await embedded?.stop().catch(() => {});
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
