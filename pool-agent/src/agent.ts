import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { getRequestListener } from '@hono/node-server';
import {
  type Ack,
  AppEnv,
  CapacityError,
  CloseCodes,
  ConflictError,
  FileBatch,
  InvalidInputError,
  LIMITS,
  type NodeCapacity,
  NotFoundError,
  PreviewError,
  type ProjectFiles,
  pathProblem,
  TemplateName,
  type TierStatus,
  UnauthorizedError,
} from '@preview/tiers';
import Docker from 'dockerode';
import { Hono } from 'hono';
import pino, { type Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type WebSocket from 'ws';
import { z } from 'zod';
import type { AgentConfig } from './config.ts';
import { DaemonLink, diffOps, fetchManifest, setAppEnv, waitReady } from './daemon-client.ts';
import { type DbForwarder, rewriteDatabaseUrl, startDbForwarder } from './db-forwarder.ts';
import { bodyError, errorBody, statusOf } from './http-errors.ts';
import { newDaemonToken, WarmPools } from './pool.ts';
import { type Registration, register } from './registration.ts';
import { createDockerRuntime, DockerRuntime } from './runtime/docker.ts';
import { createProcessRuntime } from './runtime/process.ts';
import type { ContainerRuntime, SandboxInfo } from './runtime/types.ts';
import { failResponse, rejectUpgrade, UpstreamProxy } from './upstream-proxy.ts';

export const PreviewIdSchema = z
  .string()
  .regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, "_" or "-"');

const FileValue = z.union([
  z.string(),
  z.object({ content: z.string(), encoding: z.enum(['utf8', 'base64']) }),
]);

export const ClaimBody = z.object({
  previewId: PreviewIdSchema,
  template: TemplateName,
  files: z.record(z.string(), FileValue).superRefine((files, ctx) => {
    const paths = Object.keys(files);
    if (paths.length > LIMITS.projectFiles)
      ctx.addIssue({ code: 'custom', message: `at most ${LIMITS.projectFiles} files (rule too_many_files)` });
    for (const path of paths) {
      const problem = pathProblem(path);
      if (problem)
        ctx.addIssue({ code: 'custom', path: [path], message: `${problem.message} (rule ${problem.rule})` });
    }
  }),
  /** The app's environment (e.g. DATABASE_URL); the daemon checks the same rules again. */
  env: AppEnv.optional(),
});
export type ClaimBody = z.output<typeof ClaimBody>;

/** What a claim answers. `upstream` is where the router's preview proxy forwards. */
export interface ClaimResult {
  previewId: string;
  nodeId: string;
  containerId: string;
  upstream: string;
  warm: boolean;
  ms: number;
}

type PreviewState = 'starting' | 'ready' | 'suspended' | 'failed';

interface Preview {
  id: string;
  box: SandboxInfo;
  link: DaemonLink;
  state: PreviewState;
  failure: string | undefined;
  relays: Set<WebSocket>;
}

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
  readonly app: Hono;
  readonly registration: Registration | undefined;
  /** Create a preview (warm claim, or cold when no warm sandbox fits). */
  claim(body: ClaimBody, options?: { signal?: AbortSignal }): Promise<ClaimResult>;
  apply(previewId: string, batch: FileBatch): Promise<Ack>;
  suspend(previewId: string): Promise<void>;
  resume(previewId: string): Promise<void>;
  destroy(previewId: string): Promise<boolean>;
  status(previewId: string): Promise<(TierStatus & { failed?: boolean }) | undefined>;
  capacity(): NodeCapacity;
  sessions(): string[];
  close(options?: { removeSandboxes?: boolean }): Promise<void>;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Whether the Docker engine answers and holds `image`. */
export async function dockerUsable(socketPath: string, image: string): Promise<boolean> {
  const docker = new Docker({ socketPath });
  try {
    await docker.ping();
    await docker.getImage(image).inspect();
    return true;
  } catch {
    return false;
  }
}

/** The runtime `config.AGENT_RUNTIME` names (`auto`: Docker when usable, else host processes). */
export async function buildRuntime(config: AgentConfig, log: Logger): Promise<ContainerRuntime> {
  let kind = config.AGENT_RUNTIME;
  if (kind === 'auto') {
    kind = (await dockerUsable(config.DOCKER_SOCKET, config.PREVIEW_IMAGE)) ? 'docker' : 'process';
    log.info({ runtime: kind }, 'runtime chosen');
  }
  if (kind === 'process') {
    if (!config.DAEMON_BUNDLE)
      throw new InvalidInputError('invalid_config', 'DAEMON_BUNDLE: required with AGENT_RUNTIME=process');
    return createProcessRuntime({
      daemonBundle: config.DAEMON_BUNDLE,
      templatesDir: config.PROCESS_TEMPLATES_DIR,
      workDir: config.PROCESS_WORK_DIR,
      sandbox: config.PROCESS_SANDBOX,
      uid: config.PREVIEW_UID,
      log,
    });
  }
  return createDockerRuntime({
    socketPath: config.DOCKER_SOCKET,
    node: config.NODE_NAME,
    image: config.PREVIEW_IMAGE,
    network: config.PREVIEW_NETWORK,
    uid: config.PREVIEW_UID,
    memoryMiB: config.PREVIEW_MEMORY_MIB,
    cpus: config.PREVIEW_CPUS,
    pidsLimit: config.PREVIEW_PIDS_LIMIT,
    tmpfsMiB: config.PREVIEW_TMPFS_MIB,
    logMaxSize: config.PREVIEW_LOG_MAX_SIZE,
    logMaxFile: config.PREVIEW_LOG_MAX_FILE,
    ociRuntime: config.PREVIEW_OCI_RUNTIME,
    npmCache:
      config.PREVIEW_NPM_CACHE === 'shared'
        ? { mode: 'shared', volume: config.PREVIEW_NPM_CACHE_VOLUME }
        : { mode: config.PREVIEW_NPM_CACHE },
    log,
  });
}

/**
 * Starts a pool agent: the container runtime, warm pools, the HTTP + WebSocket API and the preview
 * upstream, registration and heartbeats (when `ROUTER_URL` is set), after reconciling the sandboxes
 * it finds. Usable in-process (the router's embedded mode) and from `main.ts`.
 *
 * @example
 * const agent = await createAgent({ config: loadConfig({ AGENT_TOKEN: token, AGENT_PORT: '0' }) });
 * const res = await fetch(`${agent.url}/v1/previews`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body });
 */
export async function createAgent(options: AgentOptions): Promise<Agent> {
  const config = options.config;
  const log = options.log ?? pino({ level: config.LOG_LEVEL });
  const tokens = new Set<string>(options.tokens ?? []);
  if (config.AGENT_TOKEN) tokens.add(config.AGENT_TOKEN);
  const wantRegister = options.registerWithRouter ?? Boolean(config.ROUTER_URL && config.ROUTER_JOIN_TOKEN);
  if (tokens.size === 0 && !wantRegister)
    throw new InvalidInputError(
      'invalid_config',
      'AGENT_TOKEN: required when the agent does not register with a router (ROUTER_URL + ROUTER_JOIN_TOKEN)',
    );

  const runtime = options.runtime ?? (await buildRuntime(config, log));
  const previews = new Map<string, Preview>();
  const byBox = new Map<string, string>();
  let closing = false;

  // Postgres for full-stack previews, reachable only through this forwarder on the gateway address.
  let forwarder: DbForwarder | undefined;
  if (config.PREVIEW_DATABASE_TARGET) {
    const gateway = runtime instanceof DockerRuntime ? runtime.gateway : undefined;
    if (gateway)
      forwarder = await startDbForwarder({ listenHost: gateway, target: config.PREVIEW_DATABASE_TARGET });
    else if (runtime.kind === 'docker')
      log.warn('no gateway address on the preview network; database not forwarded');
  }

  const claimedCount = () => previews.size;
  // What every sandbox gets, warm or cold.
  const sandboxEnv: Record<string, string> = config.PREVIEW_NODE_EXTRA_CA_CERTS
    ? { NODE_EXTRA_CA_CERTS: config.PREVIEW_NODE_EXTRA_CA_CERTS }
    : {};
  const pools = new WarmPools({
    runtime,
    targets: config.WARM_POOL,
    slots: config.NODE_SLOTS,
    claimed: claimedCount,
    readyTimeoutMs: config.READY_TIMEOUT_MS,
    env: sandboxEnv,
    log,
  });

  runtime.onExit((exit) => {
    if (closing) return;
    if (pools.forget(exit.id)) {
      log.warn({ id: exit.id, reason: exit.reason }, 'warm sandbox exited; refilling');
      void runtime.remove(exit.id).then(() => pools.populate());
      return;
    }
    const pid = byBox.get(exit.id);
    const p = pid ? previews.get(pid) : undefined;
    if (!p || p.state === 'failed') return;
    p.state = 'failed';
    p.failure = exit.reason;
    log.warn({ previewId: p.id, reason: exit.reason, oomKilled: exit.oomKilled }, 'preview failed');
    for (const r of p.relays) r.close(CloseCodes.ended, 'preview failed');
  });

  function track(
    id: string,
    box: SandboxInfo,
    state: PreviewState,
    failure?: string,
    link?: DaemonLink,
  ): Preview {
    const p: Preview = {
      id,
      box,
      link: link ?? new DaemonLink(box.upstream, box.daemonToken),
      state,
      failure,
      relays: new Set(),
    };
    previews.set(id, p);
    byBox.set(box.id, id);
    return p;
  }

  function get(id: string): Preview {
    const p = previews.get(id);
    if (!p) throw new NotFoundError(`no preview ${id} on this node`, { code: 'preview_not_found' });
    return p;
  }

  function failureOf(box: SandboxInfo): () => string | undefined {
    return () => {
      const id = byBox.get(box.id);
      const p = id ? previews.get(id) : undefined;
      return p?.state === 'failed' ? p.failure : undefined;
    };
  }

  function prepareEnv(env: Record<string, string> | undefined): Record<string, string> | undefined {
    if (!env) return env;
    const out = { ...env };
    if (out['DATABASE_URL'] && forwarder && config.PREVIEW_DATABASE_TARGET)
      out['DATABASE_URL'] = rewriteDatabaseUrl(
        out['DATABASE_URL'],
        config.PREVIEW_DATABASE_TARGET,
        forwarder,
      );
    return out;
  }

  async function sendFiles(
    p: Preview,
    files: ProjectFiles,
    known: Record<string, string> | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    const manifest = known ?? (await fetchManifest(p.box.upstream, p.box.daemonToken, signal));
    const batches = diffOps(manifest, files);
    if (batches.length > 1)
      throw new InvalidInputError(
        'too_large',
        `files: the initial load must fit one batch (${LIMITS.batchOps} changed files, ${LIMITS.batchBytes} bytes)`,
      );
    // seq 0 is the initial load; the router's sync hub numbers the edits from 1.
    if (batches[0]) await p.link.send({ type: 'batch', seq: 0, ops: batches[0] });
  }

  async function claim(body: ClaimBody, opts: { signal?: AbortSignal } = {}): Promise<ClaimResult> {
    const t0 = performance.now();
    const existing = previews.get(body.previewId);
    if (existing) {
      if (existing.box.template !== body.template)
        throw new ConflictError(`preview ${body.previewId} already runs template ${existing.box.template}`);
      return result(existing, false, t0);
    }
    if (previews.size >= config.NODE_SLOTS)
      throw new CapacityError(`node ${config.NODE_NAME} is full (${config.NODE_SLOTS} slots)`, {
        retryAfterMs: 5000,
      });
    const env = prepareEnv(body.env);
    const appEnv = env && Object.keys(env).length > 0 ? env : undefined;
    const w = pools.acquire(body.template);
    const warm = w !== undefined;
    let box: SandboxInfo;
    // The rename that records the session runs beside the file load (it is not on the critical path).
    let assigned: Promise<void> = Promise.resolve();
    if (w) {
      // The environment goes in before the preview is tracked (nothing routes to it yet): from the
      // daemon's answer on it is not ready until its dev server runs with the environment, so the
      // health wait below covers the restart and the app never answers without it.
      if (appEnv)
        try {
          await setAppEnv(w.box.upstream, w.box.daemonToken, appEnv, opts.signal);
        } catch (e) {
          w.link.close();
          void runtime.remove(w.box.id).catch(() => {});
          throw e;
        }
      assigned = runtime.assign(w.box.id, body.previewId);
      box = { ...w.box, previewId: body.previewId };
    } else {
      if (pools.free() <= 0 && !evictOne())
        throw new CapacityError(`node ${config.NODE_NAME} has no free slot`, { retryAfterMs: 5000 });
      box = await runtime.create(
        {
          template: body.template,
          previewId: body.previewId,
          daemonToken: newDaemonToken(),
          // The daemon takes the app's environment at start, by the same rules as a warm claim's.
          env: { ...sandboxEnv, ...(appEnv ? { PREVIEW_APP_ENV: JSON.stringify(appEnv) } : {}) },
        },
        opts,
      );
    }
    const p = track(body.previewId, box, 'starting', undefined, w?.link);
    try {
      // Cold: the files go in while the dev server is still starting.
      if (!warm)
        await waitReady(box.upstream, {
          timeoutMs: config.READY_TIMEOUT_MS,
          listening: true,
          isDead: failureOf(box),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
      await Promise.all([sendFiles(p, body.files, w?.manifest, opts.signal), assigned]);
      await waitReady(box.upstream, {
        timeoutMs: config.READY_TIMEOUT_MS,
        isDead: failureOf(box),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      if (p.state === 'starting') p.state = 'ready';
      log.info({ previewId: p.id, warm, ms: Math.round(performance.now() - t0) }, 'preview claimed');
      return result(p, warm, t0);
    } catch (e) {
      // Bad user files are the caller's problem; anything else leaves the sandbox unusable.
      await destroy(body.previewId).catch(() => {});
      throw e;
    }
  }

  function evictOne(): boolean {
    const counts = Object.entries(pools.counts()).sort((a, b) => b[1] - a[1]);
    const top = counts[0];
    if (!top || top[1] === 0) return false;
    const victim = pools.acquire(top[0] as TemplateName);
    if (!victim) return false;
    victim.link.close();
    void runtime.remove(victim.box.id).catch(() => {});
    return true;
  }

  const self = { url: '' };
  function result(p: Preview, warm: boolean, t0: number): ClaimResult {
    return {
      previewId: p.id,
      nodeId: registration?.nodeId ?? config.NODE_NAME,
      containerId: p.box.id,
      upstream: `${self.url}/v1/previews/${p.id}/http`,
      warm,
      ms: Math.round(performance.now() - t0),
    };
  }

  async function apply(id: string, batch: FileBatch): Promise<Ack> {
    const p = get(id);
    if (p.state === 'failed')
      throw new ConflictError(`preview ${id} failed: ${p.failure}`, { code: 'preview_failed' });
    if (p.state === 'suspended')
      throw new ConflictError(`preview ${id} is suspended`, { code: 'preview_suspended' });
    return p.link.send(batch);
  }

  async function suspend(id: string): Promise<void> {
    const p = get(id);
    if (p.state === 'failed')
      throw new ConflictError(`preview ${id} failed: ${p.failure}`, { code: 'preview_failed' });
    await runtime.pause(p.box.id);
    p.state = 'suspended';
  }

  async function resume(id: string): Promise<void> {
    const p = get(id);
    if (p.state === 'failed')
      throw new ConflictError(`preview ${id} failed: ${p.failure}`, { code: 'preview_failed' });
    await runtime.unpause(p.box.id);
    p.state = 'ready';
  }

  async function destroy(id: string): Promise<boolean> {
    const p = previews.get(id);
    if (!p) return false;
    previews.delete(id);
    byBox.delete(p.box.id);
    p.link.close();
    for (const r of p.relays) r.close(CloseCodes.ended, 'preview destroyed');
    await runtime.remove(p.box.id);
    void pools.populate();
    return true;
  }

  async function status(id: string): Promise<(TierStatus & { failed?: boolean }) | undefined> {
    const p = previews.get(id);
    if (!p) return undefined;
    if (p.state === 'failed')
      return {
        phase: 'error',
        failed: true,
        message: p.failure ?? 'failed',
        log: await runtime.logs(p.box.id, { tail: 50 }),
      };
    if (p.state === 'suspended') return { phase: 'suspended' };
    try {
      const res = await fetch(`${p.box.upstream}/__preview/status`, {
        headers: { authorization: `Bearer ${p.box.daemonToken}` },
        signal: AbortSignal.timeout(3000),
      });
      if (res.ok) {
        const s = (await res.json()) as TierStatus;
        return {
          phase: s.phase,
          ...(s.message ? { message: s.message } : {}),
          ...(s.log ? { log: s.log } : {}),
        };
      }
      await res.body?.cancel();
    } catch {
      /* fall back to health */
    }
    const h = await fetch(`${p.box.upstream}/__preview/health`, { signal: AbortSignal.timeout(3000) }).catch(
      () => undefined,
    );
    await h?.body?.cancel();
    return { phase: h?.status === 200 ? 'ready' : 'starting' };
  }

  function capacity(): NodeCapacity {
    return { slots: config.NODE_SLOTS, used: previews.size, warm: pools.counts() };
  }

  function sessions(): string[] {
    return [...previews.keys()];
  }

  // ---- metrics ----
  const metrics = new Registry();
  const claims = new Counter({
    name: 'preview_agent_claims_total',
    help: 'Claims by path (warm / cold) and outcome',
    labelNames: ['path', 'outcome'] as const,
    registers: [metrics],
  });
  const claimSeconds = new Histogram({
    name: 'preview_agent_claim_seconds',
    help: 'Claim to ready, by path',
    labelNames: ['path'] as const,
    buckets: [0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30],
    registers: [metrics],
  });
  new Gauge({
    name: 'preview_agent_previews',
    help: 'Previews by state',
    labelNames: ['state'] as const,
    registers: [metrics],
    collect() {
      this.reset();
      for (const p of previews.values()) this.inc({ state: p.state });
    },
  });
  new Gauge({
    name: 'preview_agent_warm',
    help: 'Ready warm sandboxes by template',
    labelNames: ['template'] as const,
    registers: [metrics],
    collect() {
      this.reset();
      for (const [t, n] of Object.entries(pools.counts())) this.set({ template: t }, n);
    },
  });
  const envClaims = new Counter({
    name: 'preview_agent_env_claims_total',
    help: 'Successful claims that carried an app environment (e.g. DATABASE_URL), by path (warm / cold)',
    labelNames: ['path'] as const,
    registers: [metrics],
  });
  const timedClaim = async (body: ClaimBody, o: { signal?: AbortSignal }): Promise<ClaimResult> => {
    try {
      const r = await claim(body, o);
      const path = r.warm ? 'warm' : 'cold';
      claims.inc({ path, outcome: 'ok' });
      if (body.env && Object.keys(body.env).length > 0) envClaims.inc({ path });
      claimSeconds.observe({ path }, r.ms / 1000);
      return r;
    } catch (e) {
      claims.inc({ path: 'unknown', outcome: e instanceof PreviewError ? e.code : 'internal' });
      throw e;
    }
  };

  // ---- HTTP API ----
  const app = new Hono();
  const authorized = (
    headers: { authorization?: string | undefined; 'x-agent-token'?: string | undefined },
    query?: string | null,
  ): boolean => {
    const given =
      headers['x-agent-token'] ??
      (headers.authorization?.startsWith('Bearer ') ? headers.authorization.slice(7) : undefined) ??
      query ??
      undefined;
    if (!given) return false;
    for (const t of tokens) if (safeEqual(given, t)) return true;
    return false;
  };

  app.onError((e, c) => {
    const status = statusOf(e);
    if (status >= 500) log.error({ err: e, path: c.req.path }, 'request failed');
    return c.json(errorBody(e), status as 400);
  });
  app.notFound((c) =>
    c.json({ error: { code: 'not_found', message: `no route ${c.req.method} ${c.req.path}` } }, 404),
  );
  app.use('*', async (c, next) => {
    if (
      !authorized({
        authorization: c.req.header('authorization'),
        'x-agent-token': c.req.header('x-agent-token'),
      })
    )
      throw new UnauthorizedError('missing or invalid bearer token');
    await next();
  });

  const json = async (c: { req: { json: () => Promise<unknown> } }): Promise<unknown> => {
    try {
      return await c.req.json();
    } catch {
      throw new InvalidInputError('invalid_body', '(body): must be a JSON object');
    }
  };
  const idParam = (raw: string): string => {
    const r = PreviewIdSchema.safeParse(raw);
    if (!r.success)
      throw new InvalidInputError('invalid_preview_id', `previewId: ${r.error.issues[0]?.message}`);
    return r.data;
  };

  app.post('/v1/previews', async (c) => {
    const r = ClaimBody.safeParse(await json(c));
    if (!r.success) throw bodyError(r.error);
    return c.json(await timedClaim(r.data, { signal: c.req.raw.signal }), 201);
  });
  app.post('/v1/previews/:id/apply', async (c) => {
    const id = idParam(c.req.param('id'));
    const r = FileBatch.safeParse(await json(c));
    if (!r.success) throw bodyError(r.error);
    return c.json(await apply(id, r.data));
  });
  app.post('/v1/previews/:id/suspend', async (c) => {
    await suspend(idParam(c.req.param('id')));
    return c.json({ ok: true });
  });
  app.post('/v1/previews/:id/resume', async (c) => {
    await resume(idParam(c.req.param('id')));
    return c.json({ ok: true });
  });
  app.delete('/v1/previews/:id', async (c) =>
    c.json({ destroyed: await destroy(idParam(c.req.param('id'))) }),
  );
  app.get('/v1/previews/:id/status', async (c) => {
    const s = await status(idParam(c.req.param('id')));
    if (!s)
      throw new NotFoundError(`no preview ${c.req.param('id')} on this node`, { code: 'preview_not_found' });
    return c.json(s);
  });
  app.get('/v1/previews/:id/logs', async (c) => {
    const p = get(idParam(c.req.param('id')));
    const tail = z.coerce.number().int().min(1).max(5000).default(200).safeParse(c.req.query('tail'));
    if (!tail.success) throw new InvalidInputError('invalid_query', `tail: ${tail.error.issues[0]?.message}`);
    return c.json({ lines: await runtime.logs(p.box.id, { tail: tail.data }) });
  });
  app.get('/v1/capacity', (c) => c.json(capacity()));
  app.get('/metrics', async (c) =>
    c.text(await metrics.metrics(), 200, { 'content-type': metrics.contentType }),
  );
  app.get('/v1/previews', (c) =>
    c.json({
      previews: [...previews.values()].map((p) => ({
        previewId: p.id,
        state: p.state,
        template: p.box.template,
      })),
    }),
  );

  // ---- server: API, upstream proxy and WebSockets ----
  const honoListener = getRequestListener(app.fetch);
  const UPSTREAM_RE = /^\/v1\/previews\/([a-zA-Z0-9_-]{1,64})\/http(\/[^?]*)?(\?.*)?$/;
  const SYNC_RE = /^\/v1\/previews\/([a-zA-Z0-9_-]{1,64})\/sync(\?.*)?$/;

  const targetFor = (id: string): Preview => {
    const p = get(id);
    if (p.state === 'failed')
      throw new ConflictError(`preview ${id} failed: ${p.failure}`, { code: 'preview_failed' });
    if (p.state === 'suspended')
      throw new ConflictError(`preview ${id} is suspended`, { code: 'preview_suspended' });
    return p;
  };

  const proxy = new UpstreamProxy();
  const proxyHttp = (req: IncomingMessage, res: ServerResponse, id: string, path: string): void => {
    let p: Preview;
    try {
      p = targetFor(id);
    } catch (e) {
      failResponse(res, e);
      return;
    }
    proxy.http(req, res, p.box.upstream, path);
  };

  const server: Server = createServer((req, res) => {
    const url = req.url ?? '/';
    const m = UPSTREAM_RE.exec(url);
    if (m) {
      if (!authorized(req.headers as never))
        return failResponse(res, new UnauthorizedError('missing or invalid bearer token'));
      return proxyHttp(req, res, m[1]!, `${m[2] ?? '/'}${m[3] ?? ''}`);
    }
    void honoListener(req, res);
  });

  // Upgraded sockets are not closed by server.closeAllConnections(); track them for close().
  const upgraded = new Set<Duplex>();

  server.on('upgrade', (req, socket, head) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    const url = req.url ?? '/';
    const sync = SYNC_RE.exec(url);
    const upm = sync ? undefined : UPSTREAM_RE.exec(url);
    const query = new URL(url, 'http://x').searchParams.get('token');
    if (!authorized(req.headers as never, sync ? query : null))
      return rejectUpgrade(socket, new UnauthorizedError('missing or invalid bearer token'));
    let p: Preview;
    try {
      if (!sync && !upm) throw new NotFoundError(`no WebSocket route ${url.split('?')[0]}`);
      p = targetFor((sync ?? upm)![1]!);
    } catch (e) {
      return rejectUpgrade(socket, e);
    }
    if (sync)
      return proxy.relaySync(
        { upstream: p.box.upstream, daemonToken: p.box.daemonToken, relays: p.relays },
        req,
        socket,
        head,
      );
    proxy.upgrade(req, socket, head, p.box.upstream, `${upm![2] ?? '/'}${upm![3] ?? ''}`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.AGENT_PORT, config.AGENT_HOST, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  self.url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`;

  // ---- registration, then reconcile, then fill the pools ----
  let registration: Registration | undefined;
  if (wantRegister) {
    if (!config.ROUTER_URL || !config.ROUTER_JOIN_TOKEN)
      throw new InvalidInputError(
        'invalid_config',
        'ROUTER_URL and ROUTER_JOIN_TOKEN: both required to register',
      );
    registration = await register({
      routerUrl: config.ROUTER_URL,
      joinToken: config.ROUTER_JOIN_TOKEN,
      name: config.NODE_NAME,
      url: config.AGENT_PUBLIC_URL ?? self.url,
      runtime: runtime.kind,
      capacity,
      sessions,
      onCredential: (cred) => tokens.add(cred),
      log,
    });
  }

  await reconcile();
  void pools.populate();

  /**
   * Adopts the sandboxes labelled with this node whose session is live (all claimed ones when nobody
   * can say), keeps healthy warm ones in their pool, and removes the rest.
   */
  async function reconcile(): Promise<void> {
    const live = await (
      options.liveSessions ?? (() => registration?.liveSessions() ?? Promise.resolve(undefined))
    )();
    const liveSet = live ? new Set(live) : undefined;
    for (const box of await runtime.list()) {
      if (box.previewId) {
        if (liveSet && !liveSet.has(box.previewId)) {
          log.info(
            { id: box.id, previewId: box.previewId },
            'removing sandbox of a session that is not live',
          );
          await runtime.remove(box.id);
          continue;
        }
        if (previews.has(box.previewId)) continue;
        const state: PreviewState = box.exit ? 'failed' : box.state === 'paused' ? 'suspended' : 'ready';
        track(box.previewId, box, state, box.exit?.reason);
        log.info({ id: box.id, previewId: box.previewId, state }, 'adopted sandbox');
        continue;
      }
      const healthy =
        box.state === 'running' &&
        (await fetch(`${box.upstream}/__preview/health`, { signal: AbortSignal.timeout(2000) })
          .then(async (r) => {
            await r.body?.cancel();
            return r.status === 200;
          })
          .catch(() => false));
      if (healthy && (config.WARM_POOL[box.template] ?? 0) > (pools.counts()[box.template] ?? 0))
        await pools.adopt(box);
      else await runtime.remove(box.id);
    }
  }

  return {
    get url() {
      return self.url;
    },
    get nodeId() {
      return registration?.nodeId ?? config.NODE_NAME;
    },
    runtime,
    pools,
    app,
    registration,
    claim,
    apply,
    suspend,
    resume,
    destroy,
    status,
    capacity,
    sessions,
    async close(o = {}) {
      if (closing) return;
      closing = true;
      registration?.stop();
      proxy.close();
      for (const s of upgraded) s.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      for (const p of previews.values()) p.link.close();
      // Host processes cannot be adopted by a later agent: they always go with this one.
      if (o.removeSandboxes || runtime.kind === 'process') {
        await pools.drain();
        await Promise.all([...previews.values()].map((p) => runtime.remove(p.box.id).catch(() => false)));
        previews.clear();
      } else {
        await pools.settled();
      }
      await forwarder?.close();
      if (!options.runtime) await runtime.close();
    },
  };
}
