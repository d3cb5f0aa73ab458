import { resolve } from 'node:path';
import { serve } from '@hono/node-server';
import pg from 'pg';
import pino from 'pino';
import { createApp } from './app.ts';
import { loadConfig } from './config.ts';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from './db/embedded-postgres.ts';
import { migrate } from './db/migrate.ts';

const config = loadConfig(process.env);
const log = pino({ level: config.LOG_LEVEL });

let embedded: EmbeddedPostgresHandle | undefined;
let databaseUrl = config.DATABASE_URL;
if (!databaseUrl) {
  const dataDir = resolve(config.DATA_DIR, 'postgres');
  log.info({ dataDir }, 'DATABASE_URL unset: starting embedded Postgres');
  embedded = await startEmbeddedPostgres({ dataDir, log });
  databaseUrl = embedded.url;
}

const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
const migrations = await migrate(pool);
log.info(migrations, 'migrations');

const app = createApp({ pool });
const server = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT }, (info) => {
  const url = `http://${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${info.port}`;
  log.info({ url }, 'router listening');
  process.stdout.write(`\nPreview router ready at ${url}\n  health: ${url}/readyz\n\n`);
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'shutting down');
  server.close();
  await pool.end().catch(() => {});
  await embedded?.stop().catch(() => {});
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
