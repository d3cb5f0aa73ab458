export * from './mount.ts';
export * from './runtimes/index.ts';
export * from './realtime/index.ts';
