import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { type BrowserPlacements, ConflictError, NotFoundError, TierUnavailableError } from '@preview/tiers';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Logger } from 'pino';
import { createApp } from './app.ts';
import { createAccessTokens } from './auth/access-token.ts';
import { createAuthenticator } from './auth/authenticate.ts';
import { createJwtVerifier } from './auth/jwt.ts';
import { type RouterConfig, retentionMs } from './config.ts';
import { dependencyEndpoints } from './dependency-errors.ts';
import { type EditorBuild, editorFromConfig } from './editor-assets.ts';
import { EventHub } from './events.ts';
import { createMemoryLeases, createRedisLeases } from './infra/lease.ts';
import { createMemoryLiveness, createRedisLiveness } from './infra/liveness.ts';
import { createMemoryPubSub, createRedisPubSub, type PubSub } from './infra/pubsub.ts';
import { createMemoryRateLimiter, createRedisRateLimiter } from './infra/rate-limit.ts';
import { registerJobs } from './jobs/jobs.ts';
import { createBullScheduler, createMemoryScheduler, type Scheduler } from './jobs/scheduler.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { createNodeDirectory, type NodeDirectory } from './node-directory.ts';
import { NodeRegistry } from './nodes.ts';
import { createPackageCache } from './package-cache/cache.ts';
import { createRegistryClient } from './package-cache/registry.ts';
import { createPostgresModuleStore } from './package-cache/shared.ts';
import { type PreviewDatabases, PreviewService, type Tiers } from './previews.ts';
import { ProjectDatabaseService } from './project-database.ts';
import { createPreviewProxy } from './proxy/preview-proxy.ts';
import { loadRuntimeAssetsDir, type RuntimeAssets, type RuntimeHostOptions } from './routes/runtime-host.ts';
import { sessionBrowserPlacements } from './store/browser-placements.ts';
import { createPgSyncStore } from './store/project-files.ts';
import { ProjectStore } from './store/projects.ts';
import { type Session, SessionStore } from './store/sessions.ts';
import {
  createMemorySyncState,
  createRedisSyncState,
  createSyncHub,
  createSyncUpgradeHandler,
  createWaker,
  type SyncHub,
} from './sync/index.ts';
import {
  type BridgeRealtimeClient,
  createRealtimeBridgeSet,
  type RealtimeBridgeSet,
} from './sync-realtime/index.ts';

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean;

export interface RouterOptions {
  config: RouterConfig;
  pool: pg.Pool;
  /**
   * The sync hub's pool (the editors' write-behind to `project_files`), kept apart from `pool` so a
   * storm of edits does not queue in front of API requests. @default pool
   */
  syncPool?: pg.Pool | undefined;
  /** Shared Redis connection (rate limits, liveness, pub/sub); unset → in-process implementations. */
  redis?: Redis | undefined;
  /**
   * The tiers, or a function building them from the node directory (the docker tier needs it) and
   * the browser placements kept in `preview_sessions` (the browser tier's `placements`).
   */
  tiers: Tiers | ((ctx: { nodeDirectory: NodeDirectory; browserPlacements: BrowserPlacements }) => Tiers);
  databases?: PreviewDatabases | undefined;
  log: Logger;
  /** The preview origin for an id; default `${PREVIEW_SCHEME}://<id>.${PREVIEW_DOMAIN}` (+ `:port` once listening, for *.localhost). */
  previewOrigin?: (id: string) => string;
  /**
   * The bundler runtime's files (`buildBundlerAssets().files`), served on `bundler.<PREVIEW_DOMAIN>`;
   * default: the folder `BUNDLER_ASSETS_DIR`, if set.
   */
  runtimeAssets?: () => Promise<RuntimeAssets>;
  /**
   * The built editor page served at `/` (see `ensureEditorBuild`); default: built on the first
   * request to `/` into `<DATA_DIR>/editor` (`main.ts` builds it at start instead, with progress).
   */
  editor?: () => Promise<EditorBuild>;
  /** Run scheduled jobs (default true). */
  jobs?: boolean;
  /** Run the built-in sync hub on `/v1/previews/:id/sync` (default true). */
  sync?: boolean;
  /** Collect process metrics (default false; one per process). */
  defaultMetrics?: boolean;
  /**
   * Supabase Realtime as a sync transport: a service-key client (`createClient(SUPABASE_URL,
   * SUPABASE_SERVICE_ROLE_KEY, ...)`). Unset → `POST /v1/previews/:id/realtime` answers 503.
   */
  realtime?:
    | {
        client: BridgeRealtimeClient;
        /** Private channels (Realtime Authorization); must match the editors' transport. Default true. */
        private?: boolean;
        /** Largest broadcast message of the Realtime project (default 256 KiB). */
        maxMessageBytes?: number;
        /** Bridge lease TTL (default 5000). */
        leaseMs?: number;
      }
    | undefined;
}

/** States in which a preview's sandbox is gone for good (the hub stops syncing it). */
const ENDED_STATES = new Set(['ended', 'failed', 'stopping']);
/** States in which a preview has no sandbox to sync to (a bridge stops). */
const NO_SYNC_STATES = new Set(['ended', 'failed', 'stopping', 'suspended']);

/**
 * The router's metrics (live sessions and placements counted in Postgres) and its event hub (each
 * state event counted; a failed fan-out logged, not thrown).
 */
function metricsAndEvents(o: RouterOptions, store: SessionStore, pubsub: PubSub) {
  const log = o.log;
  const metrics = createMetrics({
    defaults: o.defaultMetrics ?? false,
    liveSessions: () => store.countLive(),
    livePlacements: () => store.livePlacements(),
  });
  const events = new EventHub(store, pubsub, {
    onState: (state) => metrics.stateChanges.inc({ state }),
    onFanOutError: (err, previewId) =>
      log.warn({ err, previewId }, 'event fan-out failed (stored; SSE streams catch up from the log)'),
  });
  return { metrics, events };
}

/**
 * One `info` line per session insert and state change this replica committed, with `previewId`,
 * `nodeId` (null off the docker tier), tier, state and the project: what an operator greps for.
 */
function logSessionChange(log: Logger): (s: Session) => void {
  return (s) =>
    log.info(
      {
        previewId: s.id,
        nodeId: s.nodeId,
        tier: s.tier,
        state: s.state,
        ...(s.projectId ? { projectId: s.projectId } : {}),
        ...(s.error ? { error: s.error } : {}),
      },
      `preview ${s.state}`,
    );
}

/**
 * Builds the whole router from its collaborators: stores, auth, rate limits, pub/sub, proxy, jobs
 * and the Hono app. `attach(server)` wires WebSocket upgrades (preview proxy first, then any extra
 * handler such as the sync hub).
 *
 * @example
 * const router = await createRouter({ config, pool, tiers: { browser: createBrowserTier() }, log });
 * const server = serve({ fetch: router.app.fetch, port: 0 });
 * router.attach(server);
 */
export async function createRouter(o: RouterOptions) {
  const { config, pool, redis, log } = o;
  const prefix = config.REDIS_PREFIX;
  const store = new SessionStore(pool, { onChange: logSessionChange(log) });
  const projects = new ProjectStore(pool);
  const pubsub = redis ? createRedisPubSub({ redis, prefix }) : createMemoryPubSub();
  const { metrics, events } = metricsAndEvents(o, store, pubsub);
  const liveness = redis ? createRedisLiveness({ redis, prefix }) : createMemoryLiveness();
  const nodes = new NodeRegistry({
    pool,
    liveness,
    joinToken: config.NODE_JOIN_TOKEN,
    credentialSecret:
      config.NODE_CREDENTIAL_SECRET ?? config.PREVIEW_TOKEN_SECRET ?? randomBytes(32).toString('hex'),
    heartbeatMs: config.HEARTBEAT_MS,
    ttlMs: config.NODE_TTL_MS,
    // Every agent (embedded or not) learns where previews' DATABASE_URLs point, and forwards there.
    database: o.databases?.endpoint,
  });
  const nodeDirectory = createNodeDirectory(nodes, store);
  const tiers =
    typeof o.tiers === 'function'
      ? o.tiers({ nodeDirectory, browserPlacements: sessionBrowserPlacements(pool) })
      : o.tiers;
  // Built after the hub; the preview service reaches them through these bindings.
  let bridges: RealtimeBridgeSet | undefined;
  let hub: SyncHub | undefined;
  const previews = new PreviewService({
    store,
    tiers,
    events,
    databases: o.databases,
    log,
    metrics,
    maxLivePerUser: config.MAX_LIVE_PREVIEWS_PER_USER,
    placeTimeoutMs: config.PLACE_TIMEOUT_MS,
    writer: () => hub,
    files: createPgSyncStore(pool),
    onServerLive: (previewId) => {
      bridges
        ?.ensure(previewId)
        .catch((err: unknown) => log.warn({ err, previewId }, 'realtime bridge did not start'));
    },
  });

  if (!config.SUPABASE_JWT_SECRET && !config.SUPABASE_JWKS_URL)
    throw new TypeError('createRouter: config.SUPABASE_JWT_SECRET or config.SUPABASE_JWKS_URL is required');
  const auth = createAuthenticator({
    pool,
    verifyJwt: createJwtVerifier({
      secret: config.SUPABASE_JWT_SECRET,
      jwksUrl: config.SUPABASE_JWKS_URL,
      audience: config.JWT_AUDIENCE,
    }),
  });
  const rateLimiter = redis ? createRedisRateLimiter({ redis, prefix }) : createMemoryRateLimiter();
  const accessTokens = createAccessTokens({ secret: config.PREVIEW_TOKEN_SECRET });
  let port: number | undefined;
  // Behind a load balancer (PUBLIC_URL set) previews are reached on its port, not this replica's.
  const publicPort = config.PUBLIC_URL ? new URL(config.PUBLIC_URL).port : '';
  const previewOrigin =
    o.previewOrigin ??
    ((id: string) => {
      const p = publicPort || port;
      return `${config.PREVIEW_SCHEME}://${id}.${config.PREVIEW_DOMAIN}${p && config.PREVIEW_DOMAIN.endsWith('localhost') ? `:${p}` : ''}`;
    });
  const proxy = createPreviewProxy({
    previews,
    accessTokens,
    domain: config.PREVIEW_DOMAIN,
    scheme: config.PREVIEW_SCHEME,
    trustProxy: config.TRUST_PROXY,
    cookieTtlMs: config.PREVIEW_COOKIE_TTL_MS,
    wakeWaitMs: config.WAKE_WAIT_MS,
    activityThrottleMs: config.ACTIVITY_THROTTLE_MS,
    metrics,
    log,
    agentToken: async (nodeId) => (await nodes.endpoint(nodeId))?.token,
  });
  const app = createApp({
    pool,
    dependencies: dependencyEndpoints(pool, redis),
    log,
    previews,
    projectDatabases: new ProjectDatabaseService({
      pool,
      store,
      databases: o.databases,
      log,
      allowedTargetHosts: config.DEPLOY_TARGET_HOSTS,
      previews,
    }),
    nodes,
    auth,
    rateLimiter,
    metrics,
    accessTokens,
    limits: {
      userPerMin: config.RATE_LIMIT_USER_PER_MIN,
      ipPerMin: config.RATE_LIMIT_IP_PER_MIN,
      trustProxy: config.TRUST_PROXY,
      previewTokenTtlMs: config.PREVIEW_TOKEN_TTL_MS,
      editorTokenTtlMs: config.REALTIME_EDITOR_TOKEN_TTL_MS,
      maxBodyBytes: config.MAX_REQUEST_BODY_BYTES,
    },
    previewOrigin,
    metricsToken: config.METRICS_TOKEN,
    previewHost: proxy,
    realtime: () => bridges,
    runtimeHost: runtimeHost(o, config, previewOrigin),
    packages: packageCache(o),
    editor: o.editor ?? editorFromConfig(config, log),
    ...(config.TEMPLATES_DIR ? { templatesDir: config.TEMPLATES_DIR } : {}),
  });
  const scheduler = scheduledJobs(o, { previews, nodes, metrics, projects });
  if (o.jobs ?? true) await scheduler.start();

  // The sync hub: editor sockets → the tier's live channel, write-behind to project_files. An editor
  // that connects to, or edits, a suspended preview wakes it (checked at most once a second per preview).
  const waker = createWaker({ wake: (id) => previews.wake(id), log });
  hub =
    (o.sync ?? true)
      ? createSyncHub({
          pool: o.syncPool ?? pool,
          pubsub,
          state: redis ? createRedisSyncState({ redis, prefix }) : createMemorySyncState(),
          openChannel: (previewId) => openSyncChannel(store, tiers, previewId),
          log,
          wake: waker,
          onHmr: (ms) => metrics.editUpdate.observe(ms / 1000),
        })
      : undefined;
  const syncUpgrade = hub ? createSyncUpgradeHandler({ hub, auth, store }) : undefined;

  // Supabase Realtime editors: one bridge per preview across replicas (lease `rt-bridge:<id>`), each
  // editor a virtual socket on the hub.
  if (o.realtime) {
    if (!hub) throw new TypeError('createRouter: options.realtime needs the sync hub (options.sync)');
    bridges = realtimeBridges(o.realtime, { hub, redis, prefix, store, events, accessTokens, log });
  }

  // Order: preview origins first (any path), then handlers added by the embedder, then the hub.
  const extraHandlers: UpgradeHandler[] = [];
  const upgradeHandlers = (): UpgradeHandler[] => [
    proxy.upgrade,
    ...extraHandlers,
    ...(syncUpgrade ? [syncUpgrade] : []),
  ];
  return {
    app,
    store,
    projects,
    previews,
    tiers,
    nodes,
    nodeDirectory,
    events,
    auth,
    metrics,
    accessTokens,
    scheduler,
    proxy,
    /** Extra upgrade handlers (e.g. the sync hub's `/v1/previews/:id/sync`) after the preview proxy. */
    addUpgradeHandler(h: UpgradeHandler) {
      extraHandlers.push(h);
    },
    hub,
    /** Supabase Realtime bridges (when `options.realtime` is set). */
    realtime: bridges,
    attach(server: Server) {
      const addr = server.address();
      if (addr && typeof addr === 'object') port = addr.port;
      server.on('listening', () => {
        const a = server.address();
        if (a && typeof a === 'object') port = a.port;
      });
      server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        for (const h of upgradeHandlers()) if (h(req, socket, head)) return;
        socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      });
    },
    async close() {
      proxy.close();
      syncUpgrade?.close();
      await bridges?.close().catch((err: unknown) => log.warn({ err }, 'closing realtime bridges'));
      await hub?.close();
      waker.close();
      previews.close();
      await scheduler.close();
      await rateLimiter.close();
      await pubsub.close();
    },
  };
}
export type PreviewRouter = Awaited<ReturnType<typeof createRouter>>;

/**
 * The scheduler (BullMQ with Redis, else in-process timers) with the router's jobs registered:
 * idle, reconcile, retention and, with databases, the schema janitor (intervals from the config).
 * Not started.
 */
function scheduledJobs(
  o: RouterOptions,
  d: { previews: PreviewService; nodes: NodeRegistry; metrics: Metrics; projects: ProjectStore },
): Scheduler {
  const { config, redis, log } = o;
  const scheduler: Scheduler = redis
    ? createBullScheduler({ redis, prefix: config.REDIS_PREFIX, log })
    : createMemoryScheduler({ log });
  registerJobs(
    scheduler,
    {
      ...d,
      databases: o.databases,
      log,
      idleSuspendMs: config.IDLE_SUSPEND_MS,
      idleDestroyMs: config.IDLE_DESTROY_MS,
      retentionMs: retentionMs(config),
      nodeTtlMs: config.NODE_TTL_MS,
    },
    {
      idleMs: config.IDLE_CHECK_MS,
      reconcileMs: config.RECONCILE_MS,
      janitorMs: config.JANITOR_MS,
      retentionMs: config.RETENTION_CHECK_MS,
    },
  );
  return scheduler;
}

/**
 * The sync hub's channel to a preview's sandbox: the tier's `openSync`; `null` for a browser-tier
 * preview (no sandbox: the editor's runtime applies, the hub persists and acks `persisted` only).
 * @throws ConflictError `preview_ended`, TierUnavailableError `migrating` (the owner retries),
 *   NotFoundError (no placement)
 */
async function openSyncChannel(store: SessionStore, tiers: Tiers, previewId: string) {
  const s = await store.get(previewId);
  if (s && ENDED_STATES.has(s.state))
    throw new ConflictError('preview_ended', `preview ${previewId} is ${s.state}`);
  // Between tiers (the same-id fallback): the owner retries once the new placement is recorded.
  if (s?.state === 'migrating')
    throw new TierUnavailableError('migrating', `preview ${previewId} is moving to another tier`, {
      tier: s.tier ?? 'none',
    });
  if (s?.tier === 'browser') return null;
  const tier = s?.tier ? tiers[s.tier] : undefined;
  if (!tier) throw new NotFoundError('not_found', `preview ${previewId} has no placement`);
  return await tier.openSync(previewId);
}

/**
 * The bundler runtime's package cache on the configured npm registry (`NPM_REGISTRY_URL`,
 * `NPM_CA_FILE`), sharing its bundles with the other replicas through Postgres unless
 * `PACKAGE_CACHE_SHARED=off`.
 */
function packageCache(o: RouterOptions) {
  const { config, log } = o;
  return createPackageCache({
    registry: createRegistryClient({ url: config.NPM_REGISTRY_URL, caFile: config.NPM_CA_FILE }),
    dir: config.PACKAGE_CACHE_DIR ?? join(config.DATA_DIR, 'package-cache'),
    ...(config.PACKAGE_CACHE_SHARED === 'postgres'
      ? {
          shared: createPostgresModuleStore(o.pool),
          onSharedError: (err: unknown, op: 'get' | 'put') =>
            log.warn({ err, op }, 'shared package cache failed; using the registry'),
        }
      : {}),
  });
}

/** The bundler runtime's host: assets from `options.runtimeAssets`, else from `BUNDLER_ASSETS_DIR`. */
function runtimeHost(
  o: RouterOptions,
  config: RouterOptions['config'],
  previewOrigin: (id: string) => string,
): RuntimeHostOptions | undefined {
  const dir = config.BUNDLER_ASSETS_DIR;
  const assets = o.runtimeAssets ?? (dir ? () => loadRuntimeAssetsDir(dir) : undefined);
  return assets
    ? { host: `bundler.${config.PREVIEW_DOMAIN}`, url: () => `${previewOrigin('bundler')}/`, assets }
    : undefined;
}

/**
 * The Supabase Realtime bridges: one per preview across replicas (lease `rt-bridge:<id>`), each
 * editor a virtual socket on the hub. A preview is bridged while it has a server sandbox to sync to;
 * an editor joins only with an editor token for that preview, user and editor id.
 */
function realtimeBridges(
  realtime: NonNullable<RouterOptions['realtime']>,
  d: {
    hub: SyncHub;
    redis: Redis | undefined;
    prefix: string;
    store: SessionStore;
    events: EventHub;
    accessTokens: ReturnType<typeof createAccessTokens>;
    log: Logger;
  },
): RealtimeBridgeSet {
  const { hub, redis, prefix, store, events, accessTokens, log } = d;
  return createRealtimeBridgeSet({
    realtime: realtime.client,
    ...(realtime.private !== undefined ? { private: realtime.private } : {}),
    ...(realtime.maxMessageBytes !== undefined ? { maxMessageBytes: realtime.maxMessageBytes } : {}),
    ...(realtime.leaseMs !== undefined ? { leaseMs: realtime.leaseMs } : {}),
    hub,
    leases: redis ? createRedisLeases({ redis, prefix }) : createMemoryLeases(),
    replicaId: hub.replicaId,
    lookup: async (previewId) => {
      const s = await store.get(previewId);
      if (!s?.tier || s.tier === 'browser' || NO_SYNC_STATES.has(s.state)) return undefined;
      return { userId: s.userId };
    },
    watchEnd: (previewId, onEnd) =>
      events.subscribe(previewId, (e) => {
        if (e.type === 'state' && NO_SYNC_STATES.has(e.state)) onEnd();
      }),
    verifyEditor: async (token, editor) => {
      if (!token) return false;
      const { userId } = await accessTokens.verify(token, {
        previewId: editor.previewId,
        kind: 'editor',
        editorId: editor.editorId,
      });
      return userId === editor.userId;
    },
    log,
  });
}
