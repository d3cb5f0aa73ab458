/**
 * The pool agent as a service: `node --import tsx pool-agent/src/main.ts`. Configuration comes from
 * the environment (see README.md); this is the only file that reads `process.env`.
 */
import pino from 'pino';
import { createAgent } from './agent.ts';
import { loadConfig } from './config.ts';

const config = loadConfig(process.env);
const log = pino({ level: config.LOG_LEVEL });
const agent = await createAgent({ config, log });
log.info({ url: agent.url, node: agent.nodeId, runtime: agent.runtime.kind }, 'pool agent listening');

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'stopping (sandboxes keep running and are adopted on the next start)');
  agent.close().then(
    () => process.exit(0),
    (e) => {
      log.error({ err: e }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
