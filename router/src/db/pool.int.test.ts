import { createTestDatabase, type TestDatabase } from '@preview/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../test/processes.ts';
import { createRouterPool } from './pool.ts';

/**
 * The chaos bench's Postgres restart took both router replicas down: a connection checked out of the
 * pool (a transaction between two queries) was terminated, pg emitted `error` on that client, and
 * with no listener the process exited. Here a checked-out connection is terminated by the server
 * (as a restart does); the process goes on, the client's next query fails, the pool serves again.
 */
describe('createRouterPool: a checked-out connection terminated by the server', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('does not throw an uncaught error event; the next query fails, a new one succeeds', async () => {
    const lines: unknown[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const pool = createRouterPool(db.url, log, 2);
    try {
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      // No listener of the test's own: without the pool's, the error event would be uncaught.
      await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await until('the loss logged', async () =>
        JSON.stringify(lines).includes('Postgres connection lost') ? true : undefined,
      );
      await expect(client.query('SELECT 1')).rejects.toThrow();
      client.release(true);
      expect((await pool.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n).toBe(1);
    } finally {
      await pool.end();
    }
  });
});
