export { type DaemonConfig, loadConfig } from './config.ts';
export { type Daemon, startDaemon } from './daemon.ts';
export { HmrTracker } from './hmr-tracker.ts';
export { jsonLogger, type Logger, silentLogger } from './log.ts';
export { type PathViolation, validateOps } from './validate.ts';
export { ProjectWriter } from './writer.ts';
