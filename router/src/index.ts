export { createApp } from './app.ts';
export { loadConfig, type RouterConfig } from './config.ts';
export { MIGRATIONS_DIR, migrate } from './db/migrate.ts';
