import pg from 'pg';
import type { Logger } from 'pino';

/**
 * The router's Postgres pool. A connection that dies (Postgres restarted, a failover, an admin
 * terminating it) must not take the router down: the pool's `error` covers idle connections, and
 * every connection gets its own `error` listener too, for one checked out between two queries of a
 * transaction (pg emits that on the client, where no listener meant an uncaught `error` event: the
 * process exited). The query in flight, or the next one, still fails with the error.
 * @param max connections at most. @default 20
 */
export function createRouterPool(connectionString: string, log: Logger, max = 20): pg.Pool {
  const pool = new pg.Pool({ connectionString, max });
  pool.on('error', (err) => log.warn({ err }, 'idle Postgres connection lost'));
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ err }, 'Postgres connection lost'));
  });
  return pool;
}
