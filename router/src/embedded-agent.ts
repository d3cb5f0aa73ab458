import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Agent, createAgent, dockerUsable, loadConfig as loadAgentConfig } from '@preview/pool-agent';
import type { Logger } from 'pino';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const DAEMON_BUNDLE = join(REPO, 'docker/preview-daemon/dist/daemon.mjs');

/** The embedded node's name for a data directory. */
export const embeddedNodeName = (dataDir: string): string =>
  `embedded-${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 10)}`;

/** Docker when the engine answers and has the preview image, else the host-process runtime. */
export async function pickRuntime(o: { socketPath: string; image: string }): Promise<'docker' | 'process'> {
  return (await dockerUsable(o.socketPath, o.image)) ? 'docker' : 'process';
}

/** Builds the preview-daemon bundle the host-process runtime runs, if it is not there yet. */
export async function ensureDaemonBundle(log: Logger): Promise<string> {
  if (existsSync(DAEMON_BUNDLE)) return DAEMON_BUNDLE;
  log.info({ bundle: DAEMON_BUNDLE }, 'building the preview-daemon bundle');
  const { build } = await import('esbuild');
  await build({
    entryPoints: [join(REPO, 'docker/preview-daemon/src/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['vite'],
    outfile: DAEMON_BUNDLE,
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
    logLevel: 'silent',
  });
  return DAEMON_BUNDLE;
}

/** Agent settings (pool-agent configuration names) the embedded agent takes over its defaults. */
export type EmbeddedAgentSettings = Partial<
  Record<'WARM_POOL' | 'NODE_SLOTS' | 'PREVIEW_NETWORK' | 'READY_TIMEOUT_MS', string>
>;

/**
 * The embedded pool agent: runs in the router's process and registers with it over HTTP like any
 * other node (join token → node credential, heartbeats), so the docker tier treats it like a remote one.
 * Like every agent it learns the preview database from the router's registration answer: with the
 * Docker runtime, previews reach it through the forwarder on the preview network's gateway (their
 * `DATABASE_URL` is rewritten to it); with host processes they reach it as the router does.
 *
 * @throws ConfigError (`invalid_config`) for a bad entry of `settings`, naming it.
 */
export async function startEmbeddedAgent(o: {
  /** Node name and container label (`preview.node`); stable per DATA_DIR so a restart adopts its sandboxes. */
  nodeName: string;
  routerUrl: string;
  joinToken: string;
  image: string;
  socketPath?: string;
  logLevel: string;
  /** NODE_EXTRA_CA_CERTS inside every sandbox, for dependency installs behind a TLS-intercepting proxy. */
  extraCaCerts?: string;
  /** Over the agent's defaults, e.g. `{ WARM_POOL: 'express-pg=1' }` (pool-agent README, configuration). */
  settings?: EmbeddedAgentSettings;
  log: Logger;
}): Promise<Agent> {
  const socketPath = o.socketPath ?? '/var/run/docker.sock';
  const runtime = await pickRuntime({ socketPath, image: o.image });
  const env: Record<string, string> = {
    AGENT_PORT: '0',
    NODE_NAME: o.nodeName,
    ROUTER_URL: o.routerUrl,
    ROUTER_JOIN_TOKEN: o.joinToken,
    AGENT_RUNTIME: runtime,
    PREVIEW_IMAGE: o.image,
    DOCKER_SOCKET: socketPath,
    LOG_LEVEL: o.logLevel,
    // `npm start` on a developer's machine may not run as root: the egress rules are set whenever
    // they can be, and a warning says so when they cannot (a node agent refuses to start instead).
    PREVIEW_EGRESS_ENFORCE: 'false',
    ...(o.extraCaCerts ? { PREVIEW_NODE_EXTRA_CA_CERTS: o.extraCaCerts } : {}),
    ...o.settings,
  };
  if (runtime === 'process') {
    env['DAEMON_BUNDLE'] = await ensureDaemonBundle(o.log);
    env['PROCESS_TEMPLATES_DIR'] = join(REPO, 'templates');
    o.log.warn('no Docker engine with the preview image: previews run as host processes (not isolated)');
  }
  const agent = await createAgent({ config: loadAgentConfig(env), log: o.log.child({ component: 'agent' }) });
  o.log.info({ url: agent.url, runtime }, 'embedded pool agent registered');
  return agent;
}
