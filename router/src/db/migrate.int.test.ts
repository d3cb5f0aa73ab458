import { randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '@preview/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate } from './migrate.ts';

describe('migrate (real Postgres)', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await db.drop();
  });

  it('applies every migration to an empty database, then is a no-op', async () => {
    const first = await migrate(db.pool);
    expect(first.applied.length).toBeGreaterThan(0);
    expect(first.skipped).toEqual([]);
    const tables = await db.pool.query<{ t: string }>(
      `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
    );
    expect(tables.rows.map((r) => r.t)).toEqual(
      expect.arrayContaining([
        'preview_sessions',
        'preview_nodes',
        'project_files',
        'preview_events',
        'preview_schemas',
      ]),
    );
    const second = await migrate(db.pool);
    expect(second.applied).toEqual([]);
    expect(second.skipped).toEqual(first.applied);
  });

  it('two concurrent runners do not conflict', async () => {
    const [a, b] = await Promise.all([migrate(db.pool), migrate(db.pool)]);
    expect([...a.applied, ...b.applied].sort()).toEqual([...new Set([...a.applied, ...b.applied])].sort());
    expect(a.applied.length + b.applied.length).toBe(Math.max(a.applied.length + a.skipped.length, 1));
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM preview_migrations');
    expect(rows[0].n).toBe(a.applied.length + b.applied.length);
  });

  it('row-level security shows a user only their own sessions', async () => {
    await migrate(db.pool);
    const alice = randomUUID();
    const bob = randomUUID();
    await db.pool.query(
      `INSERT INTO preview_sessions (user_id, template) VALUES ($1, 'vite-react'), ($2, 'vite-react')`,
      [alice, bob],
    );
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL ROLE authenticated');
      await client.query(`SELECT set_config('request.jwt.claims', $1, true)`, [
        JSON.stringify({ sub: alice }),
      ]);
      const seen = await client.query<{ user_id: string }>('SELECT user_id FROM preview_sessions');
      expect(seen.rows.map((r) => r.user_id)).toEqual([alice]);
      const nodes = await client.query('SELECT * FROM preview_nodes').catch((e: Error) => e);
      expect(nodes).toBeInstanceOf(Error); // no grant on nodes at all
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  it('refuses a migration whose file changed after it was applied', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'mig-'));
    await writeFile(join(dir, '001_a.sql'), 'CREATE TABLE t_a (id int);');
    await migrate(db.pool, { dir });
    await writeFile(join(dir, '001_a.sql'), 'CREATE TABLE t_a (id bigint);');
    await expect(migrate(db.pool, { dir })).rejects.toThrow(/checksum mismatch/);
  });
});
