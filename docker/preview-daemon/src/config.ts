import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppEnv, DAEMON_PORT, defineConfig, LIMITS, TemplateName } from '@preview/tiers';
import { z } from 'zod';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * The daemon's configuration, read once from the environment in `main.ts`.
 *
 * @example
 * const config = loadConfig({ PREVIEW_TEMPLATE: 'vite-react', PREVIEW_DAEMON_TOKEN: 'x'.repeat(32) });
 */
export const loadConfig = defineConfig(
  z
    .object({
      PREVIEW_TEMPLATE: TemplateName,
      PREVIEW_DAEMON_TOKEN: z.string().min(16, 'must be at least 16 characters'),
      PREVIEW_DAEMON_PORT: z.coerce.number().int().min(0).max(65535).default(DAEMON_PORT),
      PREVIEW_DAEMON_HOST: z.string().default('0.0.0.0'),
      PREVIEW_PROJECT_DIR: z.string().default('/project'),
      /** Where the templates (sources, and in the image their installed node_modules) live. */
      PREVIEW_TEMPLATES_DIR: z.string().default(join(here, 'templates')),
      /** Copy the template's files into an empty project directory at start (warm pools). */
      PREVIEW_SEED: z.enum(['0', '1']).default('1'),
      /** Dev-server caches made at image build (Vite's optimized deps), copied to the cache dir at start. */
      PREVIEW_PREBUILT_DIR: z.string().default(join(here, 'prebuilt')),
      /** Build-time mode: start, let the dev server fill its cache, stop (see the Dockerfile). */
      PREVIEW_PREBUILD: z.enum(['0', '1']).default('0'),
      /** Writable directory for dev-server caches (Vite's cacheDir); a tmpfs in the sandbox. */
      PREVIEW_CACHE_DIR: z.string().default('/tmp/preview-cache'),
      /** Most files the project may hold (never above the shared limit). */
      PREVIEW_MAX_FILES: z.coerce
        .number()
        .int()
        .positive()
        .max(LIMITS.projectFiles)
        .default(LIMITS.projectFiles),
      /** Most bytes the project may hold (never above the shared limit). */
      PREVIEW_MAX_BYTES: z.coerce
        .number()
        .int()
        .positive()
        .max(LIMITS.projectBytes)
        .default(LIMITS.projectBytes),
      DATABASE_URL: z.string().optional(),
      /**
       * The app's environment as a JSON object, when known at start (a cold claim). Counts as the
       * claim's one environment: `POST /__preview/env` then only accepts the same. See PROTOCOL.md.
       */
      PREVIEW_APP_ENV: z
        .string()
        .transform((text, ctx) => {
          try {
            return JSON.parse(text) as unknown;
          } catch {
            ctx.addIssue({ code: 'custom', message: 'must be a JSON object' });
            return z.NEVER;
          }
        })
        .pipe(AppEnv)
        .optional(),
      /**
       * The node's shared npm caches (`:`-separated), read-only: each install goes through the
       * preview's own cache, an overlay of these (see npm-cache.ts). `npm_config_cache` is not
       * used by installs: a cache npm may write is never shared between previews.
       */
      PREVIEW_NPM_CACHE_LAYERS: z.string().default('/npm-cache'),
      /** How long the app may take to open a port (then the preview is `error`, saying so). */
      PREVIEW_APP_READY_TIMEOUT_MS: z.coerce.number().int().positive().default(30_000),
      npm_config_cache: z.string().optional(),
      NODE_EXTRA_CA_CERTS: z.string().optional(),
      PATH: z.string().default('/usr/local/bin:/usr/bin:/bin'),
      HOME: z.string().default('/tmp'),
    })
    // npm_config_* variables (cache, logs dir, registry) pass through to npm and the app.
    .loose()
    .transform((e) => ({
      template: e.PREVIEW_TEMPLATE,
      token: e.PREVIEW_DAEMON_TOKEN,
      port: e.PREVIEW_DAEMON_PORT,
      host: e.PREVIEW_DAEMON_HOST,
      projectDir: resolve(e.PREVIEW_PROJECT_DIR),
      templatesDir: resolve(e.PREVIEW_TEMPLATES_DIR),
      seed: e.PREVIEW_SEED === '1',
      cacheDir: resolve(e.PREVIEW_CACHE_DIR),
      prebuiltDir: resolve(e.PREVIEW_PREBUILT_DIR),
      prebuild: e.PREVIEW_PREBUILD === '1',
      maxFiles: e.PREVIEW_MAX_FILES,
      maxBytes: e.PREVIEW_MAX_BYTES,
      /** The app's environment given at start, if any (else it comes with the claim). */
      appEnv: e.PREVIEW_APP_ENV,
      npmCacheLayers: [
        ...new Set(
          e.PREVIEW_NPM_CACHE_LAYERS.split(':')
            .filter(Boolean)
            .map((p) => resolve(p)),
        ),
      ],
      appReadyTimeoutMs: e.PREVIEW_APP_READY_TIMEOUT_MS,
      /** Passed to the app and to npm; nothing else of the daemon's environment is. */
      childEnv: {
        PATH: e.PATH,
        HOME: e.HOME,
        ...(e.DATABASE_URL ? { DATABASE_URL: e.DATABASE_URL } : {}),
        ...(e.npm_config_cache ? { npm_config_cache: e.npm_config_cache } : {}),
        ...(e.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: e.NODE_EXTRA_CA_CERTS } : {}),
        ...npmConfig(e),
      } as Record<string, string>,
    })),
);
function npmConfig(env: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env))
    if (k.startsWith('npm_config_') && typeof v === 'string') out[k] = v;
  return out;
}

export type DaemonConfig = ReturnType<typeof loadConfig>;
