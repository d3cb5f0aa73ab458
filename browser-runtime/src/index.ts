export * from './client/index.ts';
export * from './mount.ts';
export * from './realtime/index.ts';
export * from './runtimes/index.ts';
