import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Agent, createAgent, dockerUsable, loadConfig as loadAgentConfig } from '@preview/pool-agent';
import { ConfigError } from '@preview/tiers';
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
  Record<
    | 'WARM_POOL'
    | 'NODE_SLOTS'
    | 'PREVIEW_NETWORK'
    | 'READY_TIMEOUT_MS'
    | 'PROCESS_TEMPLATES'
    | 'PROCESS_SANDBOX'
    | 'PROCESS_WORK_DIR',
    string
  >
>;

/** The repo's template sources, which the host-process runtime installs from. */
export const TEMPLATE_SOURCES = join(REPO, 'templates');

/**
 * The embedded pool agent: runs in the router's process and registers with it over HTTP like any
 * other node (join token → node credential, heartbeats), so the docker tier treats it like a remote one.
 * Like every agent it learns the preview database from the router's registration answer: with the
 * Docker runtime, previews reach it through the forwarder on the preview network's gateway (their
 * `DATABASE_URL` is rewritten to it); with host processes they reach it as the router does.
 *
 * With host processes there is no image holding the templates' dependencies: the agent installs
 * them into `<dataDir>/templates` (sources mirrored from the repo's `templates/`, `npm ci` from each
 * lockfile, once per change of Node, package.json or lockfile; one log line per template). The agent
 * registers first; each template's warm pool starts once its install finished, and a create
 * meanwhile is refused at once with `installing templates ...` as the docker tier's placement reason.
 * `agent.templates.done()` resolves when every install has finished or failed.
 *
 * @throws ConfigError (`invalid_config`) for a bad entry of `settings`, naming it, or the process
 *   runtime without `dataDir`.
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
  /** The router's DATA_DIR: the host-process runtime installs the templates under `<dataDir>/templates`. */
  dataDir?: string;
  /** NODE_EXTRA_CA_CERTS (a host path) for the npm that installs the templates (host-process runtime). */
  npmCaCerts?: string;
  /** Which runtime; default: Docker when the engine answers and has `image`, else host processes. */
  runtime?: 'docker' | 'process';
  /** Over the agent's defaults, e.g. `{ WARM_POOL: 'express-pg=1' }` (pool-agent README, configuration). */
  settings?: EmbeddedAgentSettings;
  log: Logger;
}): Promise<Agent> {
  const socketPath = o.socketPath ?? '/var/run/docker.sock';
  const runtime = o.runtime ?? (await pickRuntime({ socketPath, image: o.image }));
  // Host processes see the host's files: the host's CA file serves their installs too.
  const sandboxCa = o.extraCaCerts ?? (runtime === 'process' ? o.npmCaCerts : undefined);
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
    ...(sandboxCa ? { PREVIEW_NODE_EXTRA_CA_CERTS: sandboxCa } : {}),
    ...o.settings,
  };
  if (runtime === 'process') {
    env['DAEMON_BUNDLE'] = await ensureDaemonBundle(o.log);
    if (!o.dataDir)
      throw new ConfigError(
        'invalid_config',
        'dataDir: required with the host-process runtime (templates install there)',
      );
    env['PROCESS_TEMPLATES_DIR'] = join(resolve(o.dataDir), 'templates');
    env['PROCESS_TEMPLATES_SOURCE'] = TEMPLATE_SOURCES;
    if (o.npmCaCerts) env['PROCESS_NPM_CA_CERTS'] = o.npmCaCerts;
    o.log.warn(
      o.runtime
        ? 'host-process runtime requested: previews run as host processes'
        : 'no Docker engine with the preview image: previews run as host processes',
    );
  }
  const agent = await createAgent({ config: loadAgentConfig(env), log: o.log.child({ component: 'agent' }) });
  o.log.info(
    { url: agent.url, runtime, warmTargets: agent.pools.targets() },
    'embedded pool agent registered',
  );
  const installs = agent.templates;
  if (installs) {
    o.log.info(
      { templates: installs.templates, dir: env['PROCESS_TEMPLATES_DIR'] },
      "installing the templates' dependencies (previews of a template start once it is installed)",
    );
    void installs.done().then(() => {
      const failed = installs.templates.filter((t) => installs.state(t)?.kind === 'failed');
      if (failed.length)
        o.log.error({ failed }, `templates not installed: ${failed.join(', ')} (their errors are above)`);
      else o.log.info('templates installed: previews can run');
    });
  }
  return agent;
}
