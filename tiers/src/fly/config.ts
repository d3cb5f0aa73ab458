import { z } from 'zod';
import { defineConfig } from '../config.ts';
import { DAEMON_PORT } from '../wire.ts';
import type { FlyTierOptions } from './fly-tier.ts';

const csv = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((r) => r.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string().regex(/^[a-z]{3}$/, 'a three-letter Fly region code')).min(1));

/**
 * The fly tier's environment. Parsed once by the router's `main.ts` (merge it into the router's
 * schema or call it beside it); nothing else reads `process.env`.
 *
 * @example
 * const fly = loadFlyConfig(process.env);
 * if (fly) tiers.fly = createFlyTier(flyTierOptions(fly));
 */
export const FlyConfigSchema = z.object({
  FLY_API_TOKEN: z.string().min(1),
  FLY_APP: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a Fly app name'),
  FLY_API_URL: z.url().default('https://api.machines.dev/v1'),
  /** Public URL of the app; default https://<FLY_APP>.fly.dev. */
  FLY_APP_URL: z.url().optional(),
  FLY_IMAGE: z.string().min(1),
  FLY_REGIONS: csv.default(['ams']),
  FLY_MAX_MACHINES: z.coerce.number().int().nonnegative().default(20),
  FLY_GUEST_CPU_KIND: z.enum(['shared', 'performance']).default('shared'),
  FLY_GUEST_CPUS: z.coerce.number().int().positive().default(1),
  FLY_GUEST_MEMORY_MB: z.coerce.number().int().min(256).default(1024),
  FLY_DAEMON_PORT: z.coerce.number().int().min(1).max(65535).default(DAEMON_PORT),
  FLY_DAEMON_TOKEN_SECRET: z.string().min(16, 'at least 16 characters'),
  FLY_START_TIMEOUT_MS: z.coerce.number().int().positive().default(60_000),
  FLY_READY_TIMEOUT_MS: z.coerce.number().int().nonnegative().default(120_000),
  FLY_MAX_INLINE_FILES_BYTES: z.coerce
    .number()
    .int()
    .positive()
    .default(2 * 1024 * 1024),
});
export type FlyConfig = z.output<typeof FlyConfigSchema>;

const parseFly = defineConfig(FlyConfigSchema);

/** The fly tier's config, or `undefined` when `FLY_API_TOKEN` is unset (the tier is then off). */
export function loadFlyConfig(env: Record<string, string | undefined>): FlyConfig | undefined {
  if (!env['FLY_API_TOKEN']) return undefined;
  return parseFly(env);
}

export function flyTierOptions(c: FlyConfig): FlyTierOptions {
  return {
    client: { token: c.FLY_API_TOKEN, app: c.FLY_APP, baseUrl: c.FLY_API_URL },
    image: c.FLY_IMAGE,
    regions: c.FLY_REGIONS,
    maxMachines: c.FLY_MAX_MACHINES,
    daemonTokenSecret: c.FLY_DAEMON_TOKEN_SECRET,
    daemonPort: c.FLY_DAEMON_PORT,
    guest: { cpu_kind: c.FLY_GUEST_CPU_KIND, cpus: c.FLY_GUEST_CPUS, memory_mb: c.FLY_GUEST_MEMORY_MB },
    startTimeoutMs: c.FLY_START_TIMEOUT_MS,
    readyTimeoutMs: c.FLY_READY_TIMEOUT_MS,
    maxInlineFilesBytes: c.FLY_MAX_INLINE_FILES_BYTES,
    ...(c.FLY_APP_URL ? { appUrl: c.FLY_APP_URL } : {}),
  };
}
