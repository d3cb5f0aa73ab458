import { loadConfig } from './config.ts';
import { startDaemon } from './daemon.ts';
import { jsonLogger } from './log.ts';

const log = jsonLogger();
let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env);
} catch (e) {
  log.error({ err: (e as Error).message }, 'bad configuration');
  process.exit(2);
}
const daemon = await startDaemon(config, log);
if (config.prebuild) {
  // Image build: let the dev server fill its caches for the template, then stop.
  await daemon.settled();
  const ok = daemon.phase === 'ready';
  log.info({ phase: daemon.phase }, 'prebuild done');
  await daemon.close();
  process.exit(ok ? 0 : 1);
}
let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping');
  const force = setTimeout(() => process.exit(0), 5_000);
  force.unref();
  daemon.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
