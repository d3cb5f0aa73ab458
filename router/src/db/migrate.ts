import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/** The folder the Supabase CLI reads too. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../supabase/migrations', import.meta.url));

// A fixed advisory-lock key: every router replica serialises on it while migrating.
const LOCK_KEY = 7_211_640_021;

/**
 * The Supabase CLI's migration ledger, created exactly as the CLI creates it
 * (supabase/cli `pkg/migration/history.go`): `version` is the file name's numeric prefix, `name`
 * the rest without `.sql`, `statements` what ran. One ledger for both: a file `supabase db push`
 * applied is skipped here, and a file applied here is skipped by `supabase db push`.
 */
const LEDGER_DDL = [
  'CREATE SCHEMA IF NOT EXISTS supabase_migrations',
  'CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)',
  'ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]',
  'ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text',
];

/** The router's ledger before it shared the CLI's: read once, copied over, then dropped. */
const LEGACY_LEDGER = 'public.preview_migrations';

/** The Supabase CLI's file-name rule (`^([0-9]+)_(.*)\.sql$`, supabase/cli `pkg/migration/file.go`). */
const FILE_RE = /^([0-9]+)_(.*)\.sql$/;

export interface MigrationResult {
  /** File names applied by this call, in order. */
  applied: string[];
  /** File names the ledger already listed (applied by a router or by `supabase db push`). */
  skipped: string[];
}

interface MigrationFile {
  file: string;
  version: string;
  name: string;
  sql: string;
  /** sha256 of the file (what the legacy ledger stored). */
  checksum: string;
  /** sha256 of the SQL without whitespace and `;`: equal for the file and for the CLI's split of it. */
  fingerprint: string;
}

function fingerprint(sql: string): string {
  return createHash('sha256')
    .update(sql.replace(/[\s;]+/g, ''))
    .digest('hex');
}

async function readMigrations(dir: string): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
  const versions = new Map<string, string>();
  return Promise.all(
    names.map(async (file) => {
      const m = FILE_RE.exec(file);
      if (!m)
        throw new Error(`migration ${file}: file name must be <digits>_<name>.sql (the Supabase CLI's rule)`);
      const [, version, name] = m as unknown as [string, string, string];
      const other = versions.get(version);
      if (other) throw new Error(`migrations ${other} and ${file} share version ${version}`);
      versions.set(version, file);
      const sql = await readFile(join(dir, file), 'utf8');
      return {
        file,
        version,
        name,
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
        fingerprint: fingerprint(sql),
      };
    }),
  );
}

/**
 * Copies the rows of the router's old ledger (`preview_migrations (name, checksum)`) into the
 * Supabase ledger and drops it, so a database migrated by an older router is not migrated again.
 */
async function adoptLegacyLedger(client: pg.PoolClient, files: MigrationFile[]): Promise<void> {
  const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [LEGACY_LEDGER]);
  if (!exists.rows[0]?.t) return;
  const rows = await client.query<{ name: string; checksum: string }>(
    `SELECT name, checksum FROM ${LEGACY_LEDGER}`,
  );
  const byFile = new Map(files.map((f) => [f.file, f]));
  await client.query('BEGIN');
  try {
    for (const row of rows.rows) {
      const f = byFile.get(row.name);
      if (!f) continue;
      if (f.checksum !== row.checksum)
        throw new Error(`migration ${f.file} changed after it was applied (checksum mismatch)`);
      await client.query(
        `INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES ($1, $2, $3)
         ON CONFLICT (version) DO NOTHING`,
        [f.version, f.name, [f.sql]],
      );
    }
    await client.query(`DROP TABLE ${LEGACY_LEDGER}`);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  }
}

/**
 * Applies every `*.sql` file of `dir` (named `<version>_<name>.sql`) in name order, each in its own
 * transaction together with its row in the Supabase CLI's ledger `supabase_migrations.schema_migrations`
 * — the same ledger `supabase db push` reads and writes, so the two never apply a file twice, in either
 * order. A no-op the second time; safe when several routers start at once (a session advisory lock
 * serialises them). A file whose content changed after it was applied (by the router or the CLI;
 * compared without whitespace and `;`, since the CLI stores the file split into statements) is an
 * error, not a silent re-run. A ledger row the CLI wrote without statements is trusted as is.
 *
 * @throws Error naming the file when a migration fails, changed, or is misnamed.
 * @example
 * await migrate(pool); // { applied: ['20261121000000_router_tables.sql', ...], skipped: [] }
 */
export async function migrate(pool: pg.Pool, options: { dir?: string } = {}): Promise<MigrationResult> {
  const files = await readMigrations(options.dir ?? MIGRATIONS_DIR);
  const client = await pool.connect();
  const result: MigrationResult = { applied: [], skipped: [] };
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      for (const ddl of LEDGER_DDL) await client.query(ddl);
      await adoptLegacyLedger(client, files);
      const done = new Map(
        (
          await client.query<{ version: string; statements: string[] | null }>(
            'SELECT version, statements FROM supabase_migrations.schema_migrations',
          )
        ).rows.map((r) => [r.version, r.statements]),
      );
      for (const f of files) {
        if (done.has(f.version)) {
          const statements = done.get(f.version);
          if (statements && fingerprint(statements.join('\n')) !== f.fingerprint)
            throw new Error(`migration ${f.file} changed after it was applied (checksum mismatch)`);
          result.skipped.push(f.file);
          continue;
        }
        await client.query('BEGIN');
        try {
          await client.query(f.sql);
          await client.query(
            'INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES ($1, $2, $3)',
            [f.version, f.name, [f.sql]],
          );
          await client.query('COMMIT');
        } catch (e) {
          await client.query('ROLLBACK');
          throw new Error(`migration ${f.file} failed: ${(e as Error).message}`, { cause: e });
        }
        result.applied.push(f.file);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
    }
  } finally {
    client.release();
  }
  return result;
}
