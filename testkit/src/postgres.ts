import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The machine's PostgreSQL (trust auth), overridable for other setups. */
export const TEST_PG_ADMIN_URL =
  process.env['TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/**
 * A fresh database `preview_t_<hex>` on the test server; `drop()` terminates its connections and
 * removes it. Use in `beforeAll`/`afterAll` or a vitest fixture.
 *
 * @example
 * const db = await createTestDatabase(); try { ... } finally { await db.drop(); }
 */
export async function createTestDatabase(options: { max?: number } = {}): Promise<TestDatabase> {
  const name = `preview_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(TEST_PG_ADMIN_URL);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: options.max ?? 10 });
  // DROP ... WITH (FORCE) terminates clients that are still closing; that is expected at teardown.
  pool.on('error', () => {});
  let dropped = false;
  return {
    name,
    url: url.toString(),
    pool,
    async drop() {
      if (dropped) return;
      dropped = true;
      await pool.end();
      const c = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
