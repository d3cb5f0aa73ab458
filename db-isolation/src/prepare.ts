import { type IsolationContext, LOCK_NS } from './context.ts';
import type { PrepareResult } from './db-isolation.ts';

/**
 * `DbIsolation.prepare()`: hardens the database (see its docstring). The group role is cluster-wide
 * while the advisory lock is per database, so a race with another database's router is retried.
 */
export async function prepareDatabase(ctx: IsolationContext): Promise<PrepareResult> {
  // The group role is cluster-wide while the advisory lock is per database: routers of two
  // databases can race to create it. The loser retries and finds it.
  for (let attempt = 1; ; attempt++) {
    try {
      return await prepareOnce(ctx);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (attempt >= 3 || (code !== '42710' && code !== '23505')) throw e;
    }
  }
}

async function prepareOnce(ctx: IsolationContext): Promise<PrepareResult> {
  const { admin, o, log, lockTimeout } = ctx;
  const group = o.groupRole;
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
    const dbq = (await client.query<{ q: string }>('SELECT quote_ident(current_database()) AS q')).rows[0]!.q;
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
