export * from './chromium.ts';
export * from './create-vite.ts';
export * from './docker.ts';
export * from './fake-realtime-server.ts';
export * from './log-capture.ts';
export * from './postgres.ts';
export * from './prerequisites.ts';
export * from './redis.ts';
