import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@preview/testkit';
import type pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, migrate } from './migrate.ts';

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
    const { rows } = await db.pool.query(
      'SELECT count(*)::int AS n FROM supabase_migrations.schema_migrations',
    );
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
    const dir = await mkdtemp(join(tmpdir(), 'mig-'));
    await writeFile(join(dir, '001_a.sql'), 'CREATE TABLE t_a (id int);');
    await migrate(db.pool, { dir });
    await writeFile(join(dir, '001_a.sql'), 'CREATE TABLE t_a (id bigint);');
    await expect(migrate(db.pool, { dir })).rejects.toThrow(/checksum mismatch/);
  });

  describe('one ledger with the Supabase CLI (supabase_migrations.schema_migrations)', () => {
    it('skips every file `supabase db push` already applied, and starts', async () => {
      const pushed = await supabaseDbPush(db.pool, MIGRATIONS_DIR);
      expect(pushed.length).toBeGreaterThan(0);
      // The old router re-ran the non-idempotent CREATE TABLE here and failed to start.
      const result = await migrate(db.pool);
      expect(result.applied).toEqual([]);
      expect(result.skipped).toEqual(pushed);
    });

    it('records what it applies so that `supabase db push` finds nothing left to apply', async () => {
      const { applied } = await migrate(db.pool);
      const { rows } = await db.pool.query<{ version: string; name: string }>(
        'SELECT version, name FROM supabase_migrations.schema_migrations ORDER BY version',
      );
      expect(rows.map((r) => `${r.version}_${r.name}.sql`)).toEqual(applied);
      expect(await supabaseDbPush(db.pool, MIGRATIONS_DIR)).toEqual([]);
    });

    it('applies only the files the CLI has not (a new migration after a push)', async () => {
      const dir = await scratchDir({ '001_a.sql': 'CREATE TABLE t_a (id int);' });
      await supabaseDbPush(db.pool, dir);
      await writeFile(join(dir, '002_b.sql'), 'CREATE TABLE t_b (id int);\nINSERT INTO t_b VALUES (1);');
      expect(await migrate(db.pool, { dir })).toEqual({ applied: ['002_b.sql'], skipped: ['001_a.sql'] });
      const { rows } = await db.pool.query('SELECT id FROM t_b');
      expect(rows).toEqual([{ id: 1 }]);
    });

    it('trusts a ledger row without statements (`supabase migration repair --status applied`)', async () => {
      const dir = await scratchDir({ '001_a.sql': 'CREATE TABLE t_a (id int);' });
      await db.pool.query(CLI_LEDGER_DDL);
      await db.pool.query("INSERT INTO supabase_migrations.schema_migrations (version) VALUES ('001')");
      expect(await migrate(db.pool, { dir })).toEqual({ applied: [], skipped: ['001_a.sql'] });
    });

    it('refuses a file that changed after the CLI applied it', async () => {
      const dir = await scratchDir({ '001_a.sql': 'CREATE TABLE t_a (id int);' });
      await supabaseDbPush(db.pool, dir);
      await writeFile(join(dir, '001_a.sql'), 'CREATE TABLE t_a (id bigint);');
      await expect(migrate(db.pool, { dir })).rejects.toThrow(/001_a\.sql changed .*checksum mismatch/);
    });

    it('adopts the ledger of an older router (preview_migrations) without re-running anything', async () => {
      const dir = await scratchDir({ '001_a.sql': 'CREATE TABLE t_a (id int);' });
      const sql = 'CREATE TABLE t_a (id int);';
      await db.pool.query(sql);
      await db.pool.query(
        `CREATE TABLE preview_migrations (name text PRIMARY KEY, checksum text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      await db.pool.query('INSERT INTO preview_migrations (name, checksum) VALUES ($1, $2)', [
        '001_a.sql',
        createHash('sha256').update(sql).digest('hex'),
      ]);
      expect(await migrate(db.pool, { dir })).toEqual({ applied: [], skipped: ['001_a.sql'] });
      const legacy = await db.pool.query(`SELECT to_regclass('public.preview_migrations') AS t`);
      expect(legacy.rows[0].t).toBeNull();
      expect(await supabaseDbPush(db.pool, dir)).toEqual([]);
    });

    it('refuses file names the CLI would not read as migrations', async () => {
      const dir = await scratchDir({ 'a.sql': 'SELECT 1;' });
      await expect(migrate(db.pool, { dir })).rejects.toThrow(
        /a\.sql: file name must be <digits>_<name>\.sql/,
      );
    });
  });
});

async function scratchDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mig-'));
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
  return dir;
}

/** The CLI's `CreateMigrationTable` (supabase/cli pkg/migration/history.go). */
const CLI_LEDGER_DDL = `CREATE SCHEMA IF NOT EXISTS supabase_migrations;
  CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
  ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
  ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;`;

/**
 * What `supabase db push` does to a database (supabase/cli pkg/migration): create its ledger, then
 * for each local `<version>_<name>.sql` whose version the ledger lacks, run the file's statements and
 * insert `(version, name, statements)` in one transaction. Statements are split the CLI's way
 * (pkg/parser: at `;` outside quotes, comments and dollar quotes; trailing `;` and whitespace
 * trimmed). Returns the files it applied.
 */
async function supabaseDbPush(pool: pg.Pool, dir: string): Promise<string[]> {
  await pool.query(CLI_LEDGER_DDL);
  const remote = new Set(
    (
      await pool.query<{ version: string }>('SELECT version FROM supabase_migrations.schema_migrations')
    ).rows.map((r) => r.version),
  );
  const applied: string[] = [];
  for (const file of (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort()) {
    const [, version, name] = /^([0-9]+)_(.*)\.sql$/.exec(file) ?? [];
    if (!version || remote.has(version)) continue;
    const statements = splitLikeSupabaseCli(await readFile(join(dir, file), 'utf8'));
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (const s of statements) await client.query(s);
      await client.query(
        'INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES ($1, $2, $3)',
        [version, name, statements],
      );
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK');
      throw e;
    } finally {
      client.release();
    }
    applied.push(file);
  }
  return applied;
}

function splitLikeSupabaseCli(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const emit = (end: number) => {
    const s = sql.slice(start, end).replace(/;+$/, '').trim();
    if (s) out.push(s);
    start = end;
  };
  while (i < sql.length) {
    const rest = sql.slice(i);
    if (rest.startsWith('--')) i = sql.indexOf('\n', i) < 0 ? sql.length : sql.indexOf('\n', i) + 1;
    else if (rest.startsWith('/*')) i = sql.indexOf('*/', i + 2) + 2;
    else if (sql[i] === "'") i = sql.indexOf("'", i + 1) + 1;
    else if (/^\$[A-Za-z_]*\$/.test(rest)) {
      const tag = /^\$[A-Za-z_]*\$/.exec(rest)![0];
      i = sql.indexOf(tag, i + tag.length) + tag.length;
    } else if (sql[i] === ';') {
      i++;
      emit(i);
    } else i++;
  }
  emit(sql.length);
  return out;
}
