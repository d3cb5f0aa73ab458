export * from './client/index.ts';
export * from './realtime/index.ts';
