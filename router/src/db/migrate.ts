import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/** The folder the Supabase CLI reads too. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../supabase/migrations', import.meta.url));

// A fixed advisory-lock key: every router replica serialises on it while migrating.
const LOCK_KEY = 7_211_640_021;

export interface MigrationResult {
  applied: string[];
  skipped: string[];
}

/**
 * Applies every `*.sql` file of `dir` in name order, each in its own transaction, recording what it
 * applied in `preview_migrations`. A no-op the second time; safe when several routers start at once
 * (a session advisory lock serialises them). A file whose checksum changed after it was applied is
 * an error, not a silent re-run.
 *
 * @example
 * await migrate(pool); // { applied: ['20261121000000_router_tables.sql'], skipped: [] }
 */
export async function migrate(pool: pg.Pool, options: { dir?: string } = {}): Promise<MigrationResult> {
  const dir = options.dir ?? MIGRATIONS_DIR;
  const names = (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
  const files = await Promise.all(
    names.map(async (name) => {
      const sql = await readFile(join(dir, name), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
  const client = await pool.connect();
  const result: MigrationResult = { applied: [], skipped: [] };
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS preview_migrations (
        name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const done = new Map(
        (
          await client.query<{ name: string; checksum: string }>(
            'SELECT name, checksum FROM preview_migrations',
          )
        ).rows.map((r) => [r.name, r.checksum]),
      );
      for (const f of files) {
        const prior = done.get(f.name);
        if (prior !== undefined) {
          if (prior !== f.checksum)
            throw new Error(`migration ${f.name} changed after it was applied (checksum mismatch)`);
          result.skipped.push(f.name);
          continue;
        }
        await client.query('BEGIN');
        try {
          await client.query(f.sql);
          await client.query('INSERT INTO preview_migrations (name, checksum) VALUES ($1, $2)', [
            f.name,
            f.checksum,
          ]);
          await client.query('COMMIT');
        } catch (e) {
          await client.query('ROLLBACK');
          throw new Error(`migration ${f.name} failed: ${(e as Error).message}`, { cause: e });
        }
        result.applied.push(f.name);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
    }
  } finally {
    client.release();
  }
  return result;
}
