export * from './mount.ts';
export * from './runtimes/index.ts';
