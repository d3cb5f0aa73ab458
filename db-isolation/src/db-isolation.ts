import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { ConfigError, ConflictError, InvalidInputError, TimeoutError } from '@preview/tiers';
import type pg from 'pg';
import { z } from 'zod';
import { exportSchema } from './export.ts';
import { namesFor, type PreviewNames, validTargetSchema } from './names.ts';
import { scramVerifier } from './scram.ts';

/** The minimal logger this package writes to (pino fits). */
export interface DbIsolationLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
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
  previewDatabaseUrl: z.string().refine((s) => {
    try {
      const u = new URL(s);
      return (
        (u.protocol === 'postgres:' || u.protocol === 'postgresql:') &&
        u.hostname !== '' &&
        u.pathname.length > 1
      );
    } catch {
      return false;
    }
  }, 'must be a postgres:// URL with a host and a database name'),
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

// Advisory-lock namespace ('prev'); the second key is hashtext(<32 hex>) of the preview.
const LOCK_NS = 0x70726576;
const REGISTRY = 'public.preview_schemas';
const SESSIONS = 'public.preview_sessions';

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
  const group = o.groupRole;
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

  async function prepare(): Promise<PrepareResult> {
    // The group role is cluster-wide while the advisory lock is per database: routers of two
    // databases can race to create it. The loser retries and finds it.
    for (let attempt = 1; ; attempt++) {
      try {
        return await prepareOnce();
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (attempt >= 3 || (code !== '42710' && code !== '23505')) throw e;
      }
    }
  }

  async function prepareOnce(): Promise<PrepareResult> {
    const client = await admin.connect();
    try {
      await client.query('BEGIN');
      await client.query(lockTimeout);
      await client.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_NS]);
      const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
      const wanted = decodeURIComponent(new URL(o.previewDatabaseUrl).pathname.slice(1));
      if (wanted !== db)
        log.warn(
          { database: db, previewDatabaseUrl: wanted },
          'previewDatabaseUrl names another database than the admin pool; previews may not reach their schema',
        );
      await client.query(`DO $do$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${group}') THEN
          CREATE ROLE ${group} NOLOGIN NOINHERIT;
        END IF;
      END $do$`);
      // Roles that were given something in `public` (e.g. `authenticated`'s SELECTs), plus the
      // configured trustedRoles, keep explicitly what PUBLIC gave them; preview roles get nothing.
      const keep = await client.query<{ r: string }>(
        `WITH grantees AS (
           SELECT (aclexplode(c.relacl)).grantee AS oid FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relacl IS NOT NULL
           UNION SELECT (aclexplode(p.proacl)).grantee FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace AND p.proacl IS NOT NULL
           UNION SELECT (aclexplode(a.attacl)).grantee FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND a.attacl IS NOT NULL)
         SELECT quote_ident(r.rolname) AS r FROM pg_roles r
          WHERE (r.oid IN (SELECT oid FROM grantees) OR r.rolname = ANY ($2::text[]))
            AND r.rolname !~ '^pg_' AND r.rolname !~ '^p_[0-9a-f]{32}$' AND r.rolname <> $1
          ORDER BY r.rolname`,
        [group, o.trustedRoles],
      );
      const dbq = (await client.query<{ q: string }>('SELECT quote_ident(current_database()) AS q')).rows[0]!
        .q;
      const keepList = keep.rows.map((r) => r.r).join(', ');
      if (keepList) {
        await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${dbq} TO ${keepList}`);
        await client.query(`GRANT USAGE ON SCHEMA public TO ${keepList}`);
      }
      await client.query(`REVOKE ALL ON DATABASE ${dbq} FROM PUBLIC`);
      await client.query('REVOKE ALL ON SCHEMA public FROM PUBLIC');
      await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${dbq} TO ${group}`);
      const open = await client.query<{ nspname: string }>(
        `SELECT DISTINCT n.nspname FROM pg_namespace n, aclexplode(n.nspacl) a
          WHERE a.grantee = 0 AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
      );
      await client.query('COMMIT');
      const schemasGrantedToPublic = open.rows.map((r) => r.nspname);
      if (schemasGrantedToPublic.length)
        log.warn({ schemas: schemasGrantedToPublic }, 'schemas still grant to PUBLIC: previews can use them');
      log.info({ database: db, group, kept: keep.rowCount }, 'database prepared for preview schemas');
      return { schemasGrantedToPublic };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  async function create(previewId: string, opts: { signal?: AbortSignal } = {}): Promise<PreviewDatabase> {
    const n = namesFor(previewId);
    opts.signal?.throwIfAborted();
    const { password, verifier } = await nextCredential();
    opts.signal?.throwIfAborted();
    const su = await isSuperuser();
    // One round trip, one implicit transaction; every name is hex from a validated uuid and the
    // verifier is base64 + '$:', so nothing here comes from caller text.
    const attrs = `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS
      CONNECTION LIMIT ${o.connectionLimit} PASSWORD '${verifier}'`;
    // Each variant is one round trip and one implicit transaction. Every name is hex from a validated
    // uuid and the verifier is base64 plus '$:', so nothing here comes from caller text.
    const head = `${lockTimeout};
      ${o.durableCreate ? '' : 'SET LOCAL synchronous_commit = off;'}
      SELECT pg_advisory_xact_lock(${LOCK_NS}, hashtext('${n.hex}'));`;
    // A non-superuser admin must be a member of the role to give it the schema, end its sessions,
    // drop what it owns and read it for export.
    const member = su ? '' : `GRANT ${n.role} TO current_user;`;
    const tail = `ALTER ROLE ${n.role} SET statement_timeout = ${o.statementTimeoutMs};
      ALTER ROLE ${n.role} SET search_path = ${n.schema};
      INSERT INTO ${REGISTRY} AS r (preview_id, schema_name, role_name) VALUES ('${n.previewId}', '${n.schema}', '${n.role}')
        ON CONFLICT (preview_id) DO UPDATE SET state = 'active', dropped_at = NULL,
          created_at = CASE WHEN r.state = 'dropped' THEN now() ELSE r.created_at END;`;
    const fresh = `${head}
      CREATE ROLE ${n.role} WITH ${attrs} IN ROLE ${group};
      ${member}
      CREATE SCHEMA ${n.schema} AUTHORIZATION ${n.role};
      ${tail}`;
    // The role or schema exists already (create again, a half-finished drop): bring both in line.
    const ensure = `${head}
      DO $do$ BEGIN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${n.role}') THEN
          ALTER ROLE ${n.role} WITH ${attrs};
          GRANT ${group} TO ${n.role};
        ELSE
          CREATE ROLE ${n.role} WITH ${attrs} IN ROLE ${group};
        END IF;
        ${member}
        IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '${n.schema}') THEN
          ALTER SCHEMA ${n.schema} OWNER TO ${n.role};
        ELSE
          CREATE SCHEMA ${n.schema} AUTHORIZATION ${n.role};
        END IF;
      END $do$;
      ${tail}`;
    try {
      try {
        await admin.query(fresh);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code !== '42710' && code !== '42P06') throw e;
        opts.signal?.throwIfAborted();
        await admin.query(ensure);
      }
    } catch (e) {
      throw mapPgError(e, n, 'create');
    }
    const url = new URL(o.previewDatabaseUrl);
    url.username = n.role;
    url.password = password;
    const prisma = new URL(url);
    prisma.searchParams.set('schema', n.schema);
    log.info({ previewId: n.previewId, schema: n.schema }, 'preview schema ready');
    return {
      previewId: n.previewId,
      schema: n.schema,
      role: n.role,
      databaseUrl: url.toString(),
      prismaDatabaseUrl: prisma.toString(),
    };
  }

  /**
   * Drops one preview's schema and role. `skipLocked`: give up at once (`'busy'`) when another drop
   * or create of the same preview holds its lock; otherwise wait up to lockTimeoutMs.
   */
  // A drop lost in a crash is finished later by the janitor (the row says 'dropping', or the session
  // has ended), so its commits need not wait for the WAL flush either.
  const dropCommit = o.durableCreate ? '' : 'SET LOCAL synchronous_commit = off;';

  async function dropNames(
    n: PreviewNames,
    mode: { skipLocked: boolean; stillStale?: () => Promise<boolean> },
  ): Promise<'dropped' | 'absent' | 'busy' | 'no_longer_stale'> {
    const client = await admin.connect();
    let locked = false;
    let broken: Error | undefined;
    try {
      if (mode.skipLocked) {
        const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [
          LOCK_NS,
          n.hex,
        ]);
        if (!r.rows[0]!.ok) return 'busy';
      } else {
        await client.query(`SET lock_timeout = ${o.lockTimeoutMs}`);
        try {
          await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [LOCK_NS, n.hex]);
        } finally {
          await client.query('RESET lock_timeout');
        }
      }
      locked = true;
      const state = (
        await client.query<{ row: string | null; schema: boolean; role: boolean }>(
          `SELECT (SELECT state FROM ${REGISTRY} WHERE preview_id = $1) AS row,
                  EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2) AS schema,
                  EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $3) AS role`,
          [n.previewId, n.schema, n.role],
        )
      ).rows[0]!;
      const known = state.schema || (state.row !== null && state.row !== 'dropped');
      if (!known) return 'absent';
      if (mode.stillStale && !(await mode.stillStale())) return 'no_longer_stale';
      // The role owns its objects only in a database we manage when we have a row or its schema here.
      const roleIsOurs = state.role;
      await client.query(`BEGIN; ${lockTimeout}; ${dropCommit}
        UPDATE ${REGISTRY} SET state = 'dropping' WHERE preview_id = '${n.previewId}' AND state <> 'dropped';
        ${roleIsOurs ? `ALTER ROLE ${n.role} NOLOGIN;` : ''}
        COMMIT`);
      if (roleIsOurs) {
        try {
          await client.query(
            'SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()',
            [n.role],
          );
        } catch (e) {
          log.warn(
            { previewId: n.previewId, err: (e as Error).message },
            'could not end the preview role sessions',
          );
        }
      }
      // One schema per transaction: its tables, then the role's grants and any other object it owns here.
      await client.query(`BEGIN; ${lockTimeout}; ${dropCommit}
        DROP SCHEMA IF EXISTS ${n.schema} CASCADE;
        ${roleIsOurs ? `DROP OWNED BY ${n.role} CASCADE;` : ''}
        COMMIT`);
      await client.query(`BEGIN; ${lockTimeout}; ${dropCommit}
        ${roleIsOurs ? `DROP ROLE IF EXISTS ${n.role};` : ''}
        UPDATE ${REGISTRY} SET state = 'dropped', dropped_at = now() WHERE preview_id = '${n.previewId}';
        COMMIT`);
      log.info({ previewId: n.previewId, schema: n.schema }, 'preview schema dropped');
      return 'dropped';
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      broken = e as Error;
      throw mapPgError(e, n, 'drop');
    } finally {
      if (locked && !broken) {
        await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_NS, n.hex]).catch(() => {});
      }
      // A client that failed mid-drop may still hold the session lock: discard it rather than reuse it.
      client.release(broken);
    }
  }

  async function drop(previewId: string): Promise<boolean> {
    const n = namesFor(previewId);
    return (await dropNames(n, { skipLocked: false })) === 'dropped';
  }

  async function listStale(opts: { cutoff: Date; previewId?: string }): Promise<StaleSchema[]> {
    const cutoff = opts.cutoff;
    if (!(cutoff instanceof Date) || Number.isNaN(cutoff.getTime()))
      throw new InvalidInputError('invalid_cutoff', 'cutoff: must be a valid Date');
    const r = await admin.query<{
      preview_id: string;
      schema_name: string;
      role_name: string;
      reason: StaleReason;
    }>(
      `SELECT ps.preview_id::text, ps.schema_name, ps.role_name,
              CASE WHEN ps.state = 'dropping' THEN 'incomplete'
                   WHEN s.id IS NULL THEN 'no_session' ELSE 'ended' END AS reason
         FROM ${REGISTRY} ps LEFT JOIN ${SESSIONS} s ON s.id = ps.preview_id
        WHERE ps.state <> 'dropped' AND ($2::uuid IS NULL OR ps.preview_id = $2::uuid)
          AND (ps.state = 'dropping'
               OR (s.id IS NULL AND ps.created_at < $1)
               OR (s.state IN ('ended', 'failed') AND coalesce(s.ended_at, s.updated_at) < $1))
       UNION ALL
       SELECT substr(n.nspname, 9)::uuid::text, n.nspname, 'p_' || substr(n.nspname, 9), 'orphan'
         FROM pg_namespace n
        WHERE n.nspname ~ '^preview_[0-9a-f]{32}$'
          AND ($2::uuid IS NULL OR substr(n.nspname, 9)::uuid = $2::uuid)
          AND NOT EXISTS (SELECT 1 FROM ${REGISTRY} ps WHERE ps.schema_name = n.nspname AND ps.state <> 'dropped')
        ORDER BY 1`,
      [cutoff, opts.previewId ?? null],
    );
    return r.rows.map((row) => ({
      previewId: row.preview_id,
      schema: row.schema_name,
      role: row.role_name,
      reason: row.reason,
    }));
  }

  async function runJanitor(opts: {
    isLive: (previewIds: string[]) => Promise<Set<string>>;
    graceMs: number;
    now?: Date;
  }): Promise<JanitorResult> {
    if (typeof opts?.isLive !== 'function')
      throw new ConfigError('invalid_config', 'runJanitor: isLive: must be a function');
    if (!Number.isFinite(opts.graceMs) || opts.graceMs < 0)
      throw new ConfigError('invalid_config', 'runJanitor: graceMs: must be a number >= 0');
    const cutoff = new Date((opts.now ?? new Date()).getTime() - opts.graceMs);
    const result: JanitorResult = { dropped: [], skipped: [], failed: [] };
    const candidates = await listStale({ cutoff });
    if (candidates.length === 0) return result;
    const live = await opts.isLive(candidates.map((c) => c.previewId));
    for (const c of candidates) {
      if (live.has(c.previewId)) {
        result.skipped.push({ previewId: c.previewId, reason: 'live' });
        continue;
      }
      const n = namesFor(c.previewId);
      try {
        const outcome = await dropNames(n, {
          skipLocked: true,
          // Re-checked under the preview's lock: a create() may have revived it since the listing.
          stillStale: async () => (await listStale({ cutoff, previewId: n.previewId })).length > 0,
        });
        if (outcome === 'dropped') result.dropped.push(c);
        else if (outcome === 'busy') result.skipped.push({ previewId: c.previewId, reason: 'busy' });
        else result.skipped.push({ previewId: c.previewId, reason: 'no_longer_stale' });
      } catch (e) {
        log.warn({ previewId: c.previewId, err: (e as Error).message }, 'janitor could not drop a schema');
        result.failed.push({ previewId: c.previewId, error: (e as Error).message });
      }
    }
    log.info(
      { dropped: result.dropped.length, skipped: result.skipped.length, failed: result.failed.length },
      'schema janitor run',
    );
    return result;
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
    prepare,
    create,
    drop,
    get,
    export: exportPreview,
    listStale: (x) => listStale({ cutoff: x?.cutoff }),
    runJanitor,
  };
}

function mapPgError(e: unknown, n: PreviewNames, op: string): Error {
  const code = (e as { code?: string }).code;
  if (code === '55P03')
    return new TimeoutError(
      'timeout',
      `${op} ${n.previewId}: the preview's schema is locked by another operation`,
      { cause: e },
    );
  if (code === '2BP01')
    return new ConflictError(
      'conflict',
      `${op} ${n.previewId}: role ${n.role} still owns objects elsewhere`,
      { cause: e },
    );
  return e as Error;
}
