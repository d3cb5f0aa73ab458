export * from './runtimes/index.ts';
