import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ConfigError } from '@preview/tiers';
import type pg from 'pg';
import { z } from 'zod';
import { type DbIsolationLogger, type IsolationContext, REGISTRY } from './context.ts';
import { createPreviewSchema } from './create.ts';
import { connectTarget, type DeployReport, deploySchema, isTargetDatabaseUrl } from './deploy.ts';
import { dropNames } from './drop.ts';
import { exportSchema } from './export.ts';
import { listStale, runJanitor } from './janitor.ts';
import { namesFor, validTargetSchema } from './names.ts';
import { prepareDatabase } from './prepare.ts';
import { scramVerifier } from './scram.ts';
import { type SeedResult, seedPreview } from './seed.ts';

export type { DbIsolationLogger } from './context.ts';
export type { DeployReport } from './deploy.ts';
export type { SeedResult } from './seed.ts';

/** Where {@link DbIsolation.deploy} copies a preview's schema to. */
export interface DeployTarget {
  /**
   * The target database, `postgres://user:password@host:port/database` (`postgresql://` too; query
   * parameters such as `sslmode` are passed to `pg`). The user needs CREATE on the database (for a
   * new schema) or on the schema.
   */
  databaseUrl: string;
  /** The schema of the target that receives the objects (created when missing). @default 'public' */
  schema?: string;
  /** Drop target objects with the exported names first (see `deploySchema`). @default false */
  replace?: boolean;
  /**
   * Connect to this IP address rather than resolving the URL's host (the address a caller checked
   * against its rules; see `connectTarget`). @default the host, resolved by the system
   */
  address?: string;
}

export interface DbIsolationOptions {
  /** A pool connected as the database owner (or a superuser) of the router's database. */
  admin: pg.Pool;
  /**
   * The URL previews use to reach this database (`postgres://host:port/database`, optionally with
   * query parameters such as `sslmode`). User and password are filled in per preview.
   */
  previewDatabaseUrl: string;
  /** `CONNECTION LIMIT` of every preview role. Default 5. */
  connectionLimit?: number;
  /** `statement_timeout` default of every preview role, in ms. Default 15000. */
  statementTimeoutMs?: number;
  /** `lock_timeout` for the router's own DDL (create, drop, janitor), in ms. Default 5000. */
  lockTimeoutMs?: number;
  /**
   * Wait for the WAL flush when committing creates and drops. Default false: they commit with
   * `synchronous_commit = off` (saves an fsync, a few ms each). After a PostgreSQL crash the last
   * creates/drops (at most ~3 × wal_writer_delay) may be lost as a whole, never half: a lost create
   * is restored by calling `create` again; a lost drop leaves the row `dropping` or the session
   * ended, and the janitor finishes it.
   */
  durableCreate?: boolean;
  /**
   * PBKDF2 rounds of the SCRAM-SHA-256 verifier stored for each preview role. Default 256.
   * PostgreSQL re-derives the key once in CREATE/ALTER ROLE (to refuse an empty password) and each
   * client derives it on every connection, so the cost is paid twice per create and once per preview
   * connection (4096 rounds: ~14 ms on the test machine). Iterations only slow offline guessing of
   * low-entropy passwords; these are 192-bit random and never chosen by a person, so 256 loses
   * nothing. PostgreSQL 16's `scram_iterations` accepts any count from 1.
   */
  scramIterations?: number;
  /**
   * Existing roles that must keep connecting to this database and using schema `public` after
   * `prepare()` withdraws those privileges from PUBLIC (on Supabase: `authenticator`, `anon`,
   * `service_role`, ...). Roles that hold a grant on something in `public` are kept anyway.
   */
  trustedRoles?: string[];
  /**
   * The NOLOGIN group every preview role belongs to; it holds `CONNECT, TEMPORARY` on this database
   * (granting per role would make concurrent creates fight over the one `pg_database` row).
   * Default `preview_users`. Use a different name per database when several routers share a cluster.
   */
  groupRole?: string;
  log?: DbIsolationLogger;
}

/** What a preview needs to reach its database. */
export interface PreviewDatabase {
  previewId: string;
  schema: string;
  role: string;
  /**
   * `postgres://p_<hex>:<password>@host:port/db`: hand it to the preview as `DATABASE_URL`. The role's
   * `search_path` is its schema, so `pg`, Knex and Drizzle (and their migrations) use it unchanged.
   */
  databaseUrl: string;
  /**
   * The same URL in Prisma's form, `...?schema=preview_<hex>` (Prisma ignores `search_path` and
   * defaults to `public` without it; see Prisma's PostgreSQL connector docs, "schema" argument):
   * hand it to the preview as `PRISMA_DATABASE_URL`. Other clients must not get it (`pg` would send
   * `schema` to the server as a startup parameter).
   */
  prismaDatabaseUrl: string;
}

/** Where previews' database connections go: host and port of `previewDatabaseUrl`. */
export interface DatabaseEndpoint {
  /** A host name or an IP address (IPv6 without brackets). */
  host: string;
  /** TCP port; 5432 when the URL names none. */
  port: number;
}

/** A row of `preview_schemas`. */
export interface PreviewSchemaRecord {
  previewId: string;
  schema: string;
  role: string;
  state: 'active' | 'dropping' | 'dropped';
  createdAt: Date;
  droppedAt: Date | null;
}

/** Why a schema is up for removal. */
export type StaleReason =
  /** the session ended or failed before the cutoff */
  | 'ended'
  /** the registry row exists but the session row does not (and the row is older than the cutoff) */
  | 'no_session'
  /** a `preview_<hex>` schema with no active registry row */
  | 'orphan'
  /** a drop began and did not finish */
  | 'incomplete';

export interface StaleSchema {
  previewId: string;
  schema: string;
  role: string;
  reason: StaleReason;
}

export interface JanitorResult {
  dropped: StaleSchema[];
  skipped: Array<{ previewId: string; reason: 'live' | 'busy' | 'no_longer_stale' }>;
  failed: Array<{ previewId: string; error: string }>;
  /**
   * One-off seed login roles (`ps_<hex>_<random>`) past their `VALID UNTIL`, left by a router that
   * died mid-seed, dropped (what they owned reassigned to the preview role first).
   */
  droppedSeedRoles: string[];
}

export interface PrepareResult {
  /** Other schemas of this database that still grant USAGE or CREATE to PUBLIC (previews can use them). */
  schemasGrantedToPublic: string[];
}

/** See {@link createDbIsolation}. */
export interface DbIsolation {
  /**
   * Host and port of `previewDatabaseUrl`: what an agent forwards previews' database traffic to
   * (the router announces it to pool agents when they register).
   */
  readonly endpoint: DatabaseEndpoint;
  /**
   * One-time, idempotent hardening of the admin pool's database (safe to call at every start; replicas
   * serialise on an advisory lock). In one transaction it:
   * 1. creates the NOLOGIN group `groupRole` (default `preview_users`) if missing;
   * 2. grants `CONNECT, TEMPORARY` on the database and `USAGE` on schema `public` explicitly to the
   *    roles that hold a grant on something in `public` (e.g. `authenticated`) and to `trustedRoles`,
   *    so they keep what they had through PUBLIC;
   * 3. `REVOKE ALL ON DATABASE <db> FROM PUBLIC` (CONNECT, TEMPORARY, CREATE);
   * 4. `REVOKE ALL ON SCHEMA public FROM PUBLIC` (USAGE, CREATE);
   * 5. `GRANT CONNECT, TEMPORARY ON DATABASE <db> TO <groupRole>`.
   * The router's own tables stay usable: it connects as the database owner, who needs no grant.
   * Returns the other schemas that still grant to PUBLIC (previews can use those).
   */
  prepare(): Promise<PrepareResult>;
  /**
   * Creates schema `preview_<hex>` owned by the new role `p_<hex>` (LOGIN, random password stored as
   * a SCRAM verifier, `CONNECTION LIMIT`, `statement_timeout`, `search_path` = its schema, member of
   * the group only) and records it in `preview_schemas`, all in one transaction.
   * Idempotent: for a preview that already has a schema, the schema and its data are kept, the role
   * is brought back in line and gets a NEW password; the returned URL carries it (the old one stops
   * working for new connections). Throws `InvalidInputError` for a previewId that is not a uuid.
   */
  create(previewId: string, options?: { signal?: AbortSignal }): Promise<PreviewDatabase>;
  /**
   * Removes a preview's database: marks the row `dropping` and disables LOGIN, ends the role's
   * sessions, drops the schema (CASCADE) and what the role owns in one transaction, then the role,
   * and marks the row `dropped`. `false` when there was nothing to drop. Waits at most
   * `lockTimeoutMs` for a concurrent create/drop of the same preview (then `TimeoutError`).
   */
  drop(previewId: string): Promise<boolean>;
  /**
   * The registry record of a preview's database (`active`, `dropping` or `dropped`), or null when it
   * never had one. Never returns credentials: only `create` issues a password.
   */
  get(previewId: string): Promise<PreviewSchemaRecord | null>;
  /**
   * Streams SQL that rebuilds the preview's schema and rows in an empty database, in `targetSchema`
   * (default `public`, where the app's unqualified names land in production). Load with
   * `psql -v ON_ERROR_STOP=1 -1 -f export.sql "$DATABASE_URL"`. No role names, no grants.
   * RLS policies are written `TO PUBLIC`. Not exported: range types and partitioned tables (a
   * comment marks them), grants.
   * `NotFoundError` when the preview has no schema.
   */
  export(previewId: string, options?: { targetSchema?: string }): Promise<Readable>;
  /**
   * Copies the preview's schema with its rows into another database in one transaction there, and
   * checks row counts and sequence values against the preview before committing (`deploySchema`).
   * Throws `InvalidInputError` `invalid_database_url` / `invalid_target_schema` for bad input,
   * `InvalidInputError` `target_refused` when the target refuses the login (wrong password, no such
   * database), `TierUnavailableError` `target_unreachable` when it cannot be reached, `NotFoundError`
   * when the preview has no schema, `ConflictError` `target_conflict`, `PreviewError` `deploy_failed`.
   */
  deploy(previewId: string, target: DeployTarget): Promise<DeployReport>;
  /**
   * Runs SQL text in the preview's schema as the preview's role (never as the admin), in one
   * transaction (`seedPreview`); `timeoutMs` bounds each statement (default: `statementTimeoutMs`).
   * Throws `NotFoundError` `no_database`, `InvalidInputError` `seed_failed` with PostgreSQL's
   * message and position.
   */
  seed(previewId: string, sql: string, options?: { timeoutMs?: number }): Promise<SeedResult>;
  /**
   * Schemas to remove: `ended` (session ended/failed before `cutoff`), `no_session` (registry row
   * older than `cutoff` without a session row), `incomplete` (a drop that did not finish) and
   * `orphan` (a `preview_<hex>` schema of this database with no active registry row).
   */
  listStale(options: { cutoff: Date }): Promise<StaleSchema[]>;
  /**
   * Drops what `listStale({ cutoff: now - graceMs })` finds, except previews `isLive` reports live.
   * Each drop takes the preview's advisory lock with try-lock semantics (a busy preview is skipped,
   * never waited for) and re-checks staleness under it, so two runs at once drop each schema once.
   * DDL runs under `lock_timeout`, one schema per transaction, so other previews are never blocked.
   */
  runJanitor(options: {
    isLive: (previewIds: string[]) => Promise<Set<string>>;
    graceMs: number;
    now?: Date;
  }): Promise<JanitorResult>;
}

const identifier = /^[a-z_][a-z0-9_]{0,62}$/;
const optionsSchema = z.object({
  admin: z.custom<pg.Pool>(
    (v) =>
      typeof v === 'object' &&
      v !== null &&
      typeof (v as pg.Pool).connect === 'function' &&
      typeof (v as pg.Pool).query === 'function',
    'must be a pg.Pool',
  ),
  previewDatabaseUrl: z
    .string()
    .refine(isTargetDatabaseUrl, 'must be a postgres:// URL with a host and a database name'),
  connectionLimit: z.number().int().min(1).max(1000).default(5),
  statementTimeoutMs: z.number().int().min(1).max(86_400_000).default(15_000),
  lockTimeoutMs: z.number().int().min(1).max(600_000).default(5_000),
  durableCreate: z.boolean().default(false),
  trustedRoles: z.array(z.string().min(1).max(63)).default([]),
  scramIterations: z.number().int().min(1).max(1_000_000).default(256),
  groupRole: z
    .string()
    .regex(identifier, 'must be a lowercase SQL identifier')
    .refine((s) => !/^p_[0-9a-f]{32}$/.test(s) && !s.startsWith('pg_'), 'must not look like a preview role')
    .default('preview_users'),
  log: z
    .custom<DbIsolationLogger>(
      (v) => typeof v === 'object' && v !== null && typeof (v as DbIsolationLogger).warn === 'function',
      'must have info() and warn()',
    )
    .optional(),
});

const silent: DbIsolationLogger = { info() {}, warn() {} };

/**
 * Per-preview PostgreSQL: one schema `preview_<hex>` owned by one login role `p_<hex>` per preview
 * (hex = the 32 hex digits of the preview's uuid), in the router's own database.
 *
 * - `prepare()` hardens the database once (idempotent; see the package README, "Hardening").
 * - `create()` makes (or re-issues credentials for) a preview's schema and role.
 * - `drop()` removes them: one schema per transaction, then the role.
 * - `export()` streams SQL that rebuilds the schema and its rows in an empty database.
 * - `listStale()` / `runJanitor()` find and remove schemas of ended sessions and orphans.
 *
 * Options are checked here; a bad one throws `InvalidInputError` naming it.
 *
 * @example
 * const db = createDbIsolation({ admin: pool, previewDatabaseUrl: 'postgres://10.0.0.2:5432/app' });
 * await db.prepare();
 * const { databaseUrl } = await db.create(previewId); // -> DATABASE_URL of the preview
 * const sql = await db.export(previewId, { targetSchema: 'public' }); sql.pipe(res);
 * await db.drop(previewId);
 */
export function createDbIsolation(options: DbIsolationOptions): DbIsolation {
  const parsed = optionsSchema.safeParse(options ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      'invalid_config',
      `createDbIsolation: option ${issue?.path.join('.') || '(options)'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const o = parsed.data;
  const { admin } = o;
  const log = o.log ?? silent;
  const lockTimeout = `SET LOCAL lock_timeout = ${o.lockTimeoutMs}`;
  let superuser: Promise<boolean> | undefined;
  const isSuperuser = () => {
    superuser ??= admin
      .query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user')
      .then((r) => r.rows[0]?.s === true);
    return superuser;
  };

  // The SCRAM key derivation (4096 PBKDF2 rounds) is done ahead of time for a few credentials, off
  // the create() path; each credential is used once.
  const SPARE = 4;
  const spare: Array<Promise<{ password: string; verifier: string }>> = [];
  const makeCredential = async () => {
    const password = randomBytes(24).toString('base64url');
    return { password, verifier: await scramVerifier(password, o.scramIterations) };
  };
  const nextCredential = () => {
    const next = spare.shift() ?? makeCredential();
    while (spare.length < SPARE) spare.push(makeCredential());
    return next;
  };

  const ctx: IsolationContext = { admin, o, log, lockTimeout, isSuperuser, nextCredential };

  async function drop(previewId: string): Promise<boolean> {
    const n = namesFor(previewId);
    return (await dropNames(ctx, n, { skipLocked: false })) === 'dropped';
  }

  async function exportPreview(previewId: string, opts: { targetSchema?: string } = {}): Promise<Readable> {
    const n = namesFor(previewId);
    const target = validTargetSchema(opts.targetSchema ?? 'public');
    return exportSchema({
      admin,
      schema: n.schema,
      role: (await isSuperuser()) ? undefined : n.role,
      targetSchema: target,
      log,
    });
  }

  async function deploy(previewId: string, t: DeployTarget): Promise<DeployReport> {
    const n = namesFor(previewId);
    const targetSchema = validTargetSchema(t.schema ?? 'public', 'schema');
    const target = await connectTarget(t.databaseUrl, t.address ? { address: t.address } : {});
    try {
      return await deploySchema({
        admin,
        schema: n.schema,
        role: (await isSuperuser()) ? undefined : n.role,
        target,
        targetSchema,
        replace: t.replace ?? false,
        log,
      });
    } finally {
      await target.end().catch(() => {});
    }
  }

  async function get(previewId: string): Promise<PreviewSchemaRecord | null> {
    const n = namesFor(previewId);
    const r = await admin.query<{
      schema_name: string;
      role_name: string;
      state: PreviewSchemaRecord['state'];
      created_at: Date;
      dropped_at: Date | null;
    }>(
      `SELECT schema_name, role_name, state, created_at, dropped_at FROM ${REGISTRY} WHERE preview_id = $1`,
      [n.previewId],
    );
    const row = r.rows[0];
    if (!row) return null;
    return {
      previewId: n.previewId,
      schema: row.schema_name,
      role: row.role_name,
      state: row.state,
      createdAt: row.created_at,
      droppedAt: row.dropped_at,
    };
  }

  const base = new URL(o.previewDatabaseUrl);
  const endpoint: DatabaseEndpoint = {
    host: base.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(base.port || 5432),
  };

  return {
    endpoint,
    prepare: () => prepareDatabase(ctx),
    create: (previewId, opts) => createPreviewSchema(ctx, previewId, opts),
    drop,
    get,
    export: exportPreview,
    deploy,
    seed: (previewId, sql, opts) =>
      seedPreview(ctx, previewId, sql, { timeoutMs: opts?.timeoutMs ?? o.statementTimeoutMs }),
    listStale: (x) => listStale(ctx, { cutoff: x?.cutoff }),
    runJanitor: (x) => runJanitor(ctx, x),
  };
}
