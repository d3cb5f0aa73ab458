import { type CallOptions, NodeCapacity, type PreviewSpec } from '@preview/tiers';
import type { NodeRegistry } from './nodes.ts';
import { type NodeView, rankNodes } from './placement/rank-nodes.ts';
import type { SessionStore } from './store/sessions.ts';

export interface AgentEndpoint {
  nodeId: string;
  url: string;
  token: string;
}

/** A node to try for a new preview, with why it is where it is in the order. */
export interface NodeCandidate extends AgentEndpoint {
  reason: string;
}

export interface NodeDirectoryOptions {
  /** How long placement waits for an agent's `GET /v1/capacity` before using its heartbeat. @default 1000 */
  capacityTimeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * What the docker tier needs to know about pool agents (`createDockerTier({ pickNode, nodeOf, nodes })`),
 * answered from the node table and the liveness store, so every replica agrees.
 *
 * @example
 * const docker = createDockerTier(createNodeDirectory(registry, store));
 */
export function createNodeDirectory(
  nodes: NodeRegistry,
  store: SessionStore,
  options: NodeDirectoryOptions = {},
) {
  const alive = async () => (await nodes.list()).filter((n) => n.alive);
  const f = options.fetch ?? fetch;
  const timeoutMs = options.capacityTimeoutMs ?? 1000;

  /** The agent's own answer, now; undefined when it does not answer in time. */
  async function freshCapacity(e: AgentEndpoint, o?: CallOptions): Promise<NodeCapacity | undefined> {
    try {
      const signals = [AbortSignal.timeout(timeoutMs), ...(o?.signal ? [o.signal] : [])];
      const res = await f(`${e.url.replace(/\/$/, '')}/v1/capacity`, {
        headers: { authorization: `Bearer ${e.token}` },
        signal: AbortSignal.any(signals),
      });
      return res.ok ? NodeCapacity.parse(await res.json()) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Every live node, in the order placement should ask them (`rankNodes`: fresh capacity from the
   * agents themselves, asked in parallel, before heartbeats; room, warm-pool affinity, spread). The
   * docker tier tries them in turn; a node that answers `capacity` is skipped for the next.
   */
  async function candidates(spec: PreviewSpec, o?: CallOptions): Promise<NodeCandidate[]> {
    const views = await Promise.all(
      (await alive()).map(async (n) => {
        const endpoint = await nodes.endpoint(n.id);
        if (!endpoint) return undefined;
        const fresh = await freshCapacity(endpoint, o);
        const beat = fresh ? undefined : await nodes.liveness.get(n.id);
        const capacity: NodeView['capacity'] = fresh
          ? { source: 'fresh', value: fresh }
          : beat
            ? { source: 'heartbeat', value: beat.capacity }
            : { source: 'unknown' };
        return { endpoint, view: { nodeId: n.id, name: n.name, capacity } };
      }),
    );
    const byId = new Map(views.filter((v) => v !== undefined).map((v) => [v.endpoint.nodeId, v]));
    return rankNodes(
      [...byId.values()].map((v) => v.view),
      spec.template,
    ).map((r) => ({ ...byId.get(r.nodeId)!.endpoint, reason: r.reason }));
  }

  return {
    candidates,
    /** The first of `candidates` (placement tries them all; this is for callers that want one). */
    async pickNode(spec: PreviewSpec, o?: CallOptions): Promise<AgentEndpoint | undefined> {
      return (await candidates(spec, o))[0];
    },
    async nodeOf(previewId: string): Promise<AgentEndpoint | undefined> {
      const s = await store.get(previewId);
      return s?.placement?.tier === 'docker' ? await nodes.endpoint(s.placement.nodeId) : undefined;
    },
    endpoint: (nodeId: string): Promise<AgentEndpoint | undefined> => nodes.endpoint(nodeId),
    async nodes(): Promise<AgentEndpoint[]> {
      // Looked up together: one after the other, each create waited for a query per node in turn.
      const all = await Promise.all((await alive()).map((n) => nodes.endpoint(n.id)));
      return all.filter((e) => e !== undefined);
    },
  };
}
export type NodeDirectory = ReturnType<typeof createNodeDirectory>;
