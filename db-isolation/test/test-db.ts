/**
 * Test helper (in `test/`, not exported by the package): a fresh random database with the router's migrations
 * (`supabase/migrations/*.sql`, in name order) applied, and a `DbIsolation` on it.
 */
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '@preview/testkit';
import pg from 'pg';
import { createDbIsolation, type DbIsolation, type DbIsolationOptions } from '../src/db-isolation.ts';

const MIGRATIONS = fileURLToPath(new URL('../../supabase/migrations', import.meta.url));

/**
 * `createTestDatabase()` whose pool ignores connection errors: its `drop()` ends the pool and then
 * runs `DROP DATABASE ... WITH (FORCE)`, which can reach a client pg-pool has let go of but whose
 * socket is still closing; that error would otherwise surface as an unhandled pool 'error'.
 */
export async function createQuietTestDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase();
  db.pool.on('error', () => {});
  return db;
}

export async function applyMigrations(pool: pg.Pool): Promise<void> {
  const names = (await readdir(MIGRATIONS)).filter((n) => n.endsWith('.sql')).sort();
  for (const name of names) {
    const sql = await readFile(join(MIGRATIONS, name), 'utf8');
    try {
      await pool.query(sql);
    } catch (e) {
      // The migration creates cluster-wide roles; a parallel test may have just created them.
      if ((e as { code?: string }).code === '23505' || (e as { code?: string }).code === '42710') {
        await pool.query(sql);
      } else throw e;
    }
  }
}

export interface IsolatedDb {
  db: TestDatabase;
  iso: DbIsolation;
  /** Runs one query as a fresh client with the given URL (closed afterwards). */
  withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T>;
  /** Inserts a row into preview_sessions for a preview id. */
  addSession(previewId: string, state?: string, endedAt?: Date | null): Promise<void>;
  close(): Promise<void>;
}

export async function createIsolatedDb(options: Partial<DbIsolationOptions> = {}): Promise<IsolatedDb> {
  const db = await createQuietTestDatabase();
  const created: string[] = [];
  try {
    await applyMigrations(db.pool);
    const iso = createDbIsolation({ admin: db.pool, previewDatabaseUrl: db.url, ...options });
    await iso.prepare();
    const tracked: DbIsolation = {
      ...iso,
      async create(previewId, opts) {
        const p = await iso.create(previewId, opts);
        created.push(p.previewId);
        return p;
      },
    };
    return {
      db,
      iso: tracked,
      async withClient(url, fn) {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          return await fn(c);
        } finally {
          await c.end();
        }
      },
      async addSession(previewId, state = 'ready', endedAt = null) {
        await db.pool.query(
          'INSERT INTO preview_sessions (id, user_id, template, state, ended_at) VALUES ($1, $2, $3, $4, $5)',
          [previewId, randomUUID(), 'express-pg', state, endedAt],
        );
      },
      async close() {
        // Roles are cluster-wide: drop every preview this test made, even when the test failed.
        const errors: unknown[] = [];
        for (const id of created) await iso.drop(id).catch((e) => errors.push(e));
        await db.drop();
        if (errors.length) throw new AggregateError(errors, `cleanup of ${db.name} failed`);
      },
    };
  } catch (e) {
    await db.drop();
    throw e;
  }
}
