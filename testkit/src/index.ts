export * from './chromium.ts';
export * from './docker.ts';
export * from './postgres.ts';
export * from './redis.ts';
