/**
 * TEST ENTRY: one router replica as a child process — a sync hub on the shared Postgres and Redis,
 * served over HTTP/WebSocket (no auth: `serveSyncHub`), whose sandbox channel is a WebSocket to
 * `SANDBOX_URL`. The chaos test starts several, kills them with SIGKILL and restarts them.
 *
 * Env: DATABASE_URL, REDIS_URL, REDIS_PREFIX, SANDBOX_URL, PORT, LEASE_MS.
 * Prints `READY <port>` on stdout once listening.
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import { createRedisPubSub } from '../../src/infra/pubsub.ts';
import { createSyncHub } from '../../src/sync/hub.ts';
import { createRedisSyncState } from '../../src/sync/state.ts';
import { openWebSocketChannel } from '../../src/sync/ws-channel.ts';
import { serveSyncHub } from './serve.ts';

const env = process.env;
const need = (k: string): string => {
  const v = env[k];
  if (!v) throw new Error(`${k} is required`);
  return v;
};
const pool = new pg.Pool({ connectionString: need('DATABASE_URL'), max: 5 });
pool.on('error', () => {});
const redis = new Redis(need('REDIS_URL'), { maxRetriesPerRequest: 3 });
const prefix = env['REDIS_PREFIX'] ?? '';
const log = {
  debug() {},
  info() {},
  warn(o: object, m?: string) {
    process.stderr.write(`${JSON.stringify({ ...o, msg: m })}\n`);
  },
  error(o: object, m?: string) {
    process.stderr.write(`${JSON.stringify({ ...o, msg: m })}\n`);
  },
};
const hub = createSyncHub({
  pool,
  pubsub: createRedisPubSub({ redis, prefix }),
  state: createRedisSyncState({ redis, prefix }),
  log,
  leaseMs: Number(env['LEASE_MS'] ?? 1000),
  openChannel: () => openWebSocketChannel({ url: need('SANDBOX_URL') }),
});
const srv = await serveSyncHub(hub, { port: Number(need('PORT')) });
process.stdout.write(`READY ${srv.port}\n`);
process.on('SIGTERM', async () => {
  await srv.close();
  await hub.close();
  process.exit(0);
});
