import { type IsolationContext, LOCK_NS, mapPgError, REGISTRY } from './context.ts';
import type { PreviewNames } from './names.ts';

/**
 * Drops one preview's schema and role. `skipLocked`: give up at once (`'busy'`) when another drop
 * or create of the same preview holds its lock; otherwise wait up to lockTimeoutMs.
 */
export async function dropNames(
  ctx: IsolationContext,
  n: PreviewNames,
  mode: { skipLocked: boolean; stillStale?: () => Promise<boolean> },
): Promise<'dropped' | 'absent' | 'busy' | 'no_longer_stale'> {
  const { admin, o, log, lockTimeout } = ctx;
  // A drop lost in a crash is finished later by the janitor (the row says 'dropping', or the session
  // has ended), so its commits need not wait for the WAL flush either.
  const dropCommit = o.durableCreate ? '' : 'SET LOCAL synchronous_commit = off;';
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
