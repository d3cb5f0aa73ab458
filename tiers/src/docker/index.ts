import { ConfigError } from '@preview/tiers';
import { openDaemonSync } from '../daemon-sync/index.ts';
import { CapacityError, errorFromHttp, NotFoundError, TierUnavailableError } from '../errors.ts';
import type {
  CallOptions,
  DestroyOptions,
  Placement,
  PreviewSpec,
  ScriptRun,
  SyncChannel,
  Tier,
  TierCapacity,
  TierStatus,
} from '../types.ts';
import { Ack, type FileBatch, NodeCapacity } from '../wire.ts';
import { type AgentEndpoint, callAgent, sumCapacity } from './agent-client.ts';

export type { AgentEndpoint } from './agent-client.ts';

export interface DockerTierOptions {
  /** The agent to place a new preview on, or `undefined` when no node has room. */
  pickNode(spec: PreviewSpec, options?: CallOptions): Promise<AgentEndpoint | undefined>;
  /**
   * The agents to ask for a new preview, best first, each with why it is there. When given,
   * `create` asks them in turn: a node that answers `capacity` (or cannot be reached) is skipped for
   * the next, so the tier is full only when every node said so. Without it, `create` asks `pickNode`'s
   * one node.
   */
  candidates?(spec: PreviewSpec, options?: CallOptions): Promise<Array<AgentEndpoint & { reason?: string }>>;
  /** The agent an existing preview runs on, or `undefined` when it is on none. */
  nodeOf(previewId: string, options?: CallOptions): Promise<AgentEndpoint | undefined>;
  /** The agent of node `nodeId`, for `destroy(id, { nodeId })` (default: none). */
  endpoint?(nodeId: string, options?: CallOptions): Promise<AgentEndpoint | undefined>;
  /** Every live agent, for `capacity()` (default: none known, capacity 0). */
  nodes?(options?: CallOptions): Promise<AgentEndpoint[]>;
  /** Per-request timeout for everything but `create` (default 15 s). */
  requestTimeoutMs?: number;
  /** How long one node's claim may take, ms. @default CLAIM_TIMEOUT_MS */
  createTimeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * How long the docker tier waits for one node's claim, ms (`createTimeoutMs`). A claim answers once
 * the preview's app answers: on a loaded node the engine's start, the daemon's boot and the app's
 * first answer each wait for CPU, and the agent bounds the last two by its `READY_TIMEOUT_MS`
 * (60 s each by default).
 */
export const CLAIM_TIMEOUT_MS = 120_000;

/**
 * The docker tier: a client of the pool agents (pool-agent/README.md has their API). The router
 * supplies the node table through `pickNode` / `nodeOf` / `nodes`. A full node or an unreachable
 * agent raises `CapacityError` / `TierUnavailableError`, so placement falls through to the next tier.
 * `Placement.upstream` is the agent's preview upstream; the router's proxy forwards there with the
 * node token in `x-agent-token` (the app's own `Authorization` header then passes through untouched).
 *
 * @example
 * const docker = createDockerTier({ pickNode: async () => node, nodeOf: async () => node, nodes: async () => [node] });
 * const placement = await docker.create(spec); // { tier: 'docker', nodeId, containerId, upstream }
 */
export function createDockerTier(options: DockerTierOptions): Tier {
  if (typeof options.pickNode !== 'function' || typeof options.nodeOf !== 'function')
    throw new ConfigError('invalid_config', 'createDockerTier: pickNode and nodeOf are required functions');
  const f = options.fetch ?? fetch;
  const requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
  const createTimeoutMs = options.createTimeoutMs ?? CLAIM_TIMEOUT_MS;
  const channels = new Set<SyncChannel>();
  let closed = false;

  async function call(
    node: AgentEndpoint,
    method: string,
    path: string,
    o: { body?: unknown; signal?: AbortSignal | undefined; timeoutMs?: number } = {},
  ): Promise<{ status: number; body: unknown }> {
    if (closed) throw new TierUnavailableError('closed', 'docker tier is closed', { tier: 'docker' });
    return callAgent(f, node, method, path, { ...o, timeoutMs: o.timeoutMs ?? requestTimeoutMs });
  }

  async function nodeFor(previewId: string, o?: CallOptions): Promise<AgentEndpoint> {
    const node = await options.nodeOf(previewId, o);
    if (!node) throw new NotFoundError('preview_not_found', `no docker preview ${previewId}`);
    return node;
  }

  async function ok(
    node: AgentEndpoint,
    method: string,
    path: string,
    o: CallOptions & { body?: unknown } = {},
  ) {
    const r = await call(node, method, path, o);
    if (r.status >= 400) throw errorFromHttp(r.status, r.body, 'docker');
    return r.body;
  }

  async function claimOn(
    node: AgentEndpoint & { reason?: string },
    spec: PreviewSpec,
    o: CallOptions,
    skipped: string[],
  ): Promise<Placement> {
    const body = await ok(node, 'POST', '/v1/previews', {
      body: {
        previewId: spec.previewId,
        template: spec.template,
        files: spec.files,
        ...(spec.env ? { env: spec.env } : {}),
      },
      signal: o.signal,
      timeoutMs: createTimeoutMs,
    } as CallOptions & { body: unknown });
    const r = body as { containerId: string; upstream: string };
    const why = [node.reason, ...skipped.map((s) => `after ${s}`)].filter(Boolean).join('; ');
    return {
      tier: 'docker',
      previewId: spec.previewId,
      nodeId: node.nodeId,
      containerId: r.containerId,
      upstream: r.upstream,
      ...(why ? { reason: why } : {}),
    };
  }

  const tier: Tier = {
    name: 'docker',

    async create(spec, o = {}) {
      const nodes = options.candidates
        ? await options.candidates(spec, o)
        : [await options.pickNode(spec, o)].filter((n) => n !== undefined);
      if (nodes.length === 0) throw new CapacityError('capacity', 'no docker node is live');
      const skipped: string[] = [];
      let unavailable: unknown;
      let anyFull = false;
      for (const node of nodes) {
        try {
          return await claimOn(node, spec, o, skipped);
        } catch (e) {
          // The agent's answer is the truth: a full node, or one that cannot run it now (unreachable,
          // engine down), passes the preview on to the next. Its own words go into the reason.
          const full = e instanceof CapacityError;
          if (!full && !(e instanceof TierUnavailableError)) throw e;
          if (full) anyFull = true;
          else unavailable = e;
          skipped.push(
            `${node.nodeId} ${full ? 'answered capacity' : 'unavailable'} (${(e as Error).message})`,
          );
          if (o.signal?.aborted) throw o.signal.reason;
        }
      }
      // No node anywhere said it was full: the tier is down rather than full.
      if (unavailable && !anyFull) throw unavailable;
      throw new CapacityError('capacity', `no docker node took the preview: ${skipped.join('; ')}`);
    },

    async apply(previewId, batch: FileBatch, o = {}) {
      const node = await nodeFor(previewId, o);
      return Ack.parse(
        await ok(node, 'POST', `/v1/previews/${encodeURIComponent(previewId)}/apply`, { body: batch, ...o }),
      );
    },

    async openSync(previewId, o = {}) {
      const node = await nodeFor(previewId, o);
      const url = `${node.url.replace(/^http/, 'ws').replace(/\/$/, '')}/v1/previews/${encodeURIComponent(previewId)}/sync`;
      const ch = await openDaemonSync({
        url,
        token: node.token,
        tier: 'docker',
        ...(o.signal ? { signal: o.signal } : {}),
      });
      channels.add(ch);
      ch.onClose(() => channels.delete(ch));
      return ch;
    },

    async suspend(previewId, o = {}) {
      const node = await nodeFor(previewId, o);
      await ok(node, 'POST', `/v1/previews/${encodeURIComponent(previewId)}/suspend`, o);
    },

    async resume(previewId, o = {}) {
      const node = await nodeFor(previewId, o);
      await ok(node, 'POST', `/v1/previews/${encodeURIComponent(previewId)}/resume`, o);
    },

    async destroy(previewId, o: DestroyOptions = {}) {
      const node = o.nodeId ? await options.endpoint?.(o.nodeId, o) : await options.nodeOf(previewId, o);
      if (!node) return false;
      const r = await call(node, 'DELETE', `/v1/previews/${encodeURIComponent(previewId)}`, o);
      if (r.status === 404) return false;
      if (r.status >= 400) throw errorFromHttp(r.status, r.body, 'docker');
      return (r.body as { destroyed?: boolean }).destroyed === true;
    },

    async runScript(previewId, name, o = {}) {
      const node = await nodeFor(previewId, o);
      const r = await call(
        node,
        'POST',
        `/v1/previews/${encodeURIComponent(previewId)}/scripts/${encodeURIComponent(name)}`,
        // A script (a seed) may run for up to two minutes in the sandbox.
        { signal: o.signal, timeoutMs: 150_000 },
      );
      if (r.status >= 400) throw errorFromHttp(r.status, r.body, 'docker');
      return r.body as ScriptRun;
    },

    async status(previewId, o = {}): Promise<TierStatus | undefined> {
      const node = await options.nodeOf(previewId, o);
      if (!node) return undefined;
      const r = await call(node, 'GET', `/v1/previews/${encodeURIComponent(previewId)}/status`, o);
      if (r.status === 404) return undefined;
      if (r.status >= 400) throw errorFromHttp(r.status, r.body, 'docker');
      const s = r.body as TierStatus;
      return {
        phase: s.phase,
        ...(s.message ? { message: s.message } : {}),
        ...(s.log ? { log: s.log } : {}),
      };
    },

    async capacity(o = {}): Promise<TierCapacity> {
      const nodes = (await options.nodes?.(o)) ?? [];
      const caps = await Promise.all(
        nodes.map(async (n) => {
          try {
            return NodeCapacity.parse(await ok(n, 'GET', '/v1/capacity', o));
          } catch {
            return undefined; // an unreachable node offers nothing
          }
        }),
      );
      return sumCapacity(caps);
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const ch of channels) ch.close();
      channels.clear();
    },
  };
  return tier;
}
