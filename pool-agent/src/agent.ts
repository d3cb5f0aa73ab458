import { readdirSync } from 'node:fs';
import { type Ack, ConfigError, type FileBatch, type NodeCapacity, TemplateName } from '@preview/tiers';
import type { Hono } from 'hono';
import pino, { type Logger } from 'pino';
import { createAgentApi } from './api.ts';
import { TokenSet } from './auth.ts';
import { Claims } from './claims.ts';
import type { AgentConfig } from './config.ts';
import { DatabaseAccess } from './database-access.ts';
import { EgressGuard } from './egress/index.ts';
import { warnInotifyLimits } from './host-limits.ts';
import { type AgentStatus, PreviewLifecycle } from './lifecycle.ts';
import { AgentMetrics } from './metrics.ts';
import { type WarmPoolOptions, WarmPools } from './pool.ts';
import { PreviewTable } from './previews.ts';
import { reconcile, startStraySweep } from './reconcile.ts';
import { type Registration, register } from './registration.ts';
import type { ContainerRuntime } from './runtime/types.ts';
import { buildRuntime } from './runtime-choice.ts';
import type { ClaimBody, ClaimResult } from './schemas.ts';
import { type AgentServer, startAgentServer } from './server.ts';
import { TemplateInstalls } from './template-installs.ts';

export { buildRuntime, dockerUsable } from './runtime-choice.ts';
export { ClaimBody, type ClaimResult, PreviewIdSchema } from './schemas.ts';

export interface AgentOptions {
  config: AgentConfig;
  /** Defaults to the runtime `config.AGENT_RUNTIME` names. */
  runtime?: ContainerRuntime;
  log?: Logger;
  /**
   * Which sessions are live, asked once at start to reconcile. Default: the router's answer to
   * `GET /v1/nodes/sessions` when registered, else `undefined` (adopt every claimed sandbox).
   */
  liveSessions?: () => Promise<string[] | undefined>;
  /** Extra bearer tokens the API accepts (the embedded router passes its own). */
  tokens?: string[];
  /** Whether to register with `config.ROUTER_URL` (default: when ROUTER_URL and ROUTER_JOIN_TOKEN are set). */
  registerWithRouter?: boolean;
}

export interface Agent {
  /** `http://host:port` of the API, once listening. */
  readonly url: string;
  readonly nodeId: string;
  readonly runtime: ContainerRuntime;
  readonly pools: WarmPools;
  /**
   * The templates' installs, on the host-process runtime with PROCESS_TEMPLATES_SOURCE set
   * (`templates.done()` resolves once every template is installed or failed); else `undefined`.
   */
  readonly templates: TemplateInstalls | undefined;
  readonly app: Hono;
  readonly registration: Registration | undefined;
  /** Create a preview (warm claim, or cold when no warm sandbox fits). */
  claim(body: ClaimBody, options?: { signal?: AbortSignal }): Promise<ClaimResult>;
  apply(previewId: string, batch: FileBatch): Promise<Ack>;
  suspend(previewId: string): Promise<void>;
  resume(previewId: string): Promise<void>;
  destroy(previewId: string): Promise<boolean>;
  status(previewId: string): Promise<AgentStatus | undefined>;
  capacity(): NodeCapacity;
  sessions(): string[];
  /**
   * `http://127.0.0.1:<port>` of a preview's sandbox while it may take traffic, else `undefined`:
   * a router in the same process sends the preview's requests there itself (no hop through the
   * agent's server).
   */
  upstream(previewId: string): string | undefined;
  close(options?: { removeSandboxes?: boolean }): Promise<void>;
}

/**
 * What every sandbox gets, warm or cold: the egress settings, the CA bundle for npm, and this node's
 * readiness budget (`READY_TIMEOUT_MS`) as the daemon's deadline for the app to open its port
 * (`PREVIEW_APP_READY_TIMEOUT_MS`). With a shorter deadline of its own, a daemon on a busy node
 * stopped an app that was only slow to start, and the claim or warm start that was still willing
 * to wait failed.
 */
export function sandboxEnvOf(
  config: Pick<AgentConfig, 'PREVIEW_NODE_EXTRA_CA_CERTS' | 'READY_TIMEOUT_MS'>,
  egressEnv: Record<string, string>,
): Record<string, string> {
  return {
    ...egressEnv,
    PREVIEW_APP_READY_TIMEOUT_MS: String(config.READY_TIMEOUT_MS),
    ...(config.PREVIEW_NODE_EXTRA_CA_CERTS
      ? { NODE_EXTRA_CA_CERTS: config.PREVIEW_NODE_EXTRA_CA_CERTS }
      : {}),
  };
}

/** The node's warm pools, sized and paced by its configuration (`WARM_POOL`, `NODE_SLOTS`, ...). */
function warmPoolsOf(
  config: AgentConfig,
  o: Pick<WarmPoolOptions, 'runtime' | 'claimed' | 'env' | 'runnable' | 'log'>,
): WarmPools {
  return new WarmPools({
    ...o,
    targets: config.WARM_POOL,
    slots: config.NODE_SLOTS,
    readyTimeoutMs: config.READY_TIMEOUT_MS,
    startConcurrency: config.WARM_START_CONCURRENCY,
  });
}

/**
 * Starts a pool agent: the container runtime, warm pools, the HTTP + WebSocket API and the preview
 * upstream, registration and heartbeats (when `ROUTER_URL` is set), after reconciling the sandboxes
 * it finds. Usable in-process (the router's embedded mode) and from `main.ts`.
 *
 * @throws ConfigError (`invalid_config`) with neither a token nor a router to register with.
 * @example
 * const agent = await createAgent({ config: loadConfig({ AGENT_TOKEN: token, AGENT_PORT: '0' }) });
 * const res = await fetch(`${agent.url}/v1/previews`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
 */
export async function createAgent(options: AgentOptions): Promise<Agent> {
  const config = options.config;
  // Every line names the node; `nodeId` (the router's id for it) joins once registration gave it.
  const log = (options.log ?? pino({ level: config.LOG_LEVEL })).child({ node: config.NODE_NAME });
  const tokens = new TokenSet(options.tokens ?? []);
  if (config.AGENT_TOKEN) tokens.add(config.AGENT_TOKEN);
  const wantRegister = options.registerWithRouter ?? Boolean(config.ROUTER_URL && config.ROUTER_JOIN_TOKEN);
  if (tokens.size === 0 && !wantRegister)
    throw new ConfigError(
      'invalid_config',
      'AGENT_TOKEN: required when the agent does not register with a router (ROUTER_URL + ROUTER_JOIN_TOKEN)',
    );

  const runtime = options.runtime ?? (await buildRuntime(config, log));
  await warnInotifyLimits(config.NODE_SLOTS, log);
  const templates = runtime.kind === 'process' ? templateInstalls(config, log) : undefined;
  const database = await DatabaseAccess.start({
    runtime,
    target: config.PREVIEW_DATABASE_TARGET,
    targetFromRouter: wantRegister,
    log,
  });
  const egress = await EgressGuard.start({
    runtime,
    mode: config.PREVIEW_EGRESS,
    registry: config.PREVIEW_EGRESS_REGISTRY,
    proxyPort: config.PREVIEW_EGRESS_PROXY_PORT,
    hostPorts: database.forwarder ? [database.forwarder.port] : [],
    enforce: config.PREVIEW_EGRESS_ENFORCE,
    checkMs: config.PREVIEW_EGRESS_CHECK_MS,
    log,
  }).catch(async (e) => {
    await database.close();
    throw e;
  });
  const table = new PreviewTable();
  let closing = false;
  let server: AgentServer | undefined;
  let registration: Registration | undefined;
  const sandboxEnv = sandboxEnvOf(config, egress.sandboxEnv);
  const pools = warmPoolsOf(config, {
    runtime,
    claimed: () => table.size,
    env: sandboxEnv,
    ...(templates ? { runnable: (t: TemplateName) => templates.isInstalled(t) } : {}),
    log,
  });
  const life = new PreviewLifecycle({
    runtime,
    pools,
    table,
    log,
    // The router learns at once (GET and SSE read `failed` with the reason), not at its next reconcile.
    onFailed: (p, exit) => {
      if (registration) void registration.reportFailed(p.id, exit.reason, exit.oomKilled);
    },
  });
  runtime.onExit((exit) => {
    if (!closing) life.onExit(exit);
  });
  const nodeId = () => registration?.nodeId ?? config.NODE_NAME;
  const claims = new Claims({
    node: config.NODE_NAME,
    slots: config.NODE_SLOTS,
    readyTimeoutMs: config.READY_TIMEOUT_MS,
    runtime,
    pools,
    table,
    sandboxEnv,
    appEnv: (env) => database.appEnv(env),
    destroy: (id) => life.destroy(id),
    ...(templates ? { checkTemplate: (t: TemplateName) => templates.check(t) } : {}),
    nodeId,
    url: () => server?.url ?? '',
    log,
  });
  const capacity = (): NodeCapacity => ({ slots: config.NODE_SLOTS, used: table.size, warm: pools.counts() });
  const sessions = () => table.ids();
  const metrics = new AgentMetrics({
    previewStates: () => [...table.values()].map((p) => p.state.kind),
    warmCounts: () => pools.counts(),
  });
  const app = createAgentApi({
    tokens,
    claim: (body, o) =>
      metrics.timeClaim(
        () => claims.claim(body, o),
        (r) => ({ warm: r.warm, ms: r.ms, withEnv: !!body.env && Object.keys(body.env).length > 0 }),
      ),
    apply: (id, batch) => life.apply(id, batch),
    suspend: (id) => life.suspend(id),
    resume: (id) => life.resume(id),
    destroy: (id) => life.destroy(id),
    status: (id) => life.status(id),
    logs: (id, tail) => life.logs(id, tail),
    runScript: (id, name) => life.runScript(id, name),
    capacity,
    list: () =>
      [...table.values()].map((p) => ({ previewId: p.id, state: p.state.kind, template: p.box.template })),
    metrics: () => metrics.text(),
    log,
  });
  server = await startAgentServer({
    host: config.AGENT_HOST,
    port: config.AGENT_PORT,
    app,
    tokens,
    routable: (id) => table.routable(id),
  });
  const url = server.url;

  // Registration, then reconcile, then fill the pools.
  if (wantRegister) {
    if (!config.ROUTER_URL || !config.ROUTER_JOIN_TOKEN)
      throw new ConfigError('invalid_config', 'ROUTER_URL and ROUTER_JOIN_TOKEN: both required to register');
    registration = await register({
      routerUrl: config.ROUTER_URL,
      joinToken: config.ROUTER_JOIN_TOKEN,
      name: config.NODE_NAME,
      url: config.AGENT_PUBLIC_URL ?? url,
      runtime: runtime.kind,
      capacity,
      sessions,
      onCredential: (cred) => tokens.add(cred),
      onRegistered: (reg) => database.useRouterTarget(reg.database),
      log,
    });
    log.setBindings({ nodeId: registration.nodeId });
  } else log.setBindings({ nodeId: config.NODE_NAME });
  await reconcile({
    runtime,
    pools,
    table,
    targets: config.WARM_POOL,
    liveSessions: options.liveSessions ?? (() => registration?.liveSessions() ?? Promise.resolve(undefined)),
    egress,
    log,
  });
  // A sandbox a failed claim left behind is removed (nothing else would ever see it).
  const stopSweep = startStraySweep({ runtime, table, claiming: (id) => claims.inFlight.has(id), log });
  if (templates) {
    // Each template's pool fills as soon as its dependencies are there; claims meanwhile say why not.
    templates.onInstalled(() => void pools.populate());
    void templates.start();
  } else void pools.populate();

  return {
    url,
    get nodeId() {
      return nodeId();
    },
    runtime,
    pools,
    templates,
    app,
    registration,
    claim: (body, o) => claims.claim(body, o),
    apply: (id, batch) => life.apply(id, batch),
    suspend: (id) => life.suspend(id),
    resume: (id) => life.resume(id),
    destroy: (id) => life.destroy(id),
    status: (id) => life.status(id),
    capacity,
    sessions,
    upstream(id) {
      try {
        return table.routable(id).box.upstream;
      } catch {
        return undefined;
      }
    },
    async close(o = {}) {
      if (closing) return;
      closing = true;
      stopSweep();
      registration?.stop();
      await templates?.stop();
      await server?.close();
      for (const p of table.values()) p.link.close();
      // Host processes cannot be adopted by a later agent: they always go with this one.
      if (o.removeSandboxes || runtime.kind === 'process') {
        await pools.drain();
        await Promise.all(
          table.ids().map((id) => runtime.remove(table.remove(id)!.box.id).catch(() => false)),
        );
      } else {
        await pools.settled();
      }
      // Rules stay while sandboxes (of any agent) use the network; the last one out removes them.
      if (o.removeSandboxes && runtime.networkInUse && !(await runtime.networkInUse().catch(() => true)))
        await egress.removeRules().catch((e) => log.warn({ err: e }, 'egress rules not removed'));
      await egress.close();
      await database.close();
      if (!options.runtime) await runtime.close();
    },
  };
}

/**
 * The template installer of a host-process agent, when `PROCESS_TEMPLATES_SOURCE` is set: the
 * templates of `PROCESS_TEMPLATES` (default: every template of the sources), those with a warm pool
 * first, into `PROCESS_TEMPLATES_DIR`.
 *
 * @throws ConfigError (`invalid_config`) without PROCESS_TEMPLATES_DIR, or for a template without sources.
 */
function templateInstalls(config: AgentConfig, log: Logger): TemplateInstalls | undefined {
  const source = config.PROCESS_TEMPLATES_SOURCE;
  if (!source) return undefined;
  if (!config.PROCESS_TEMPLATES_DIR)
    throw new ConfigError(
      'invalid_config',
      'PROCESS_TEMPLATES_DIR: required with PROCESS_TEMPLATES_SOURCE (where the templates are installed)',
    );
  const all =
    config.PROCESS_TEMPLATES ??
    readdirSync(source)
      .filter((n) => TemplateName.safeParse(n).success)
      .map((n) => n as TemplateName);
  const warm = (t: TemplateName) => ((config.WARM_POOL[t] ?? 0) > 0 ? 0 : 1);
  const ordered = [...all].sort((a, b) => warm(a) - warm(b));
  return new TemplateInstalls({
    sourceDir: source,
    targetDir: config.PROCESS_TEMPLATES_DIR,
    templates: ordered,
    caCerts: config.PROCESS_NPM_CA_CERTS,
    node: config.NODE_NAME,
    log,
  });
}
