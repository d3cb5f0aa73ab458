import type { PreviewSpec } from '@preview/tiers';
import type { NodeRegistry } from './nodes.ts';
import type { SessionStore } from './store/sessions.ts';

export interface AgentEndpoint {
  nodeId: string;
  url: string;
  token: string;
}

/**
 * What the docker tier needs to know about pool agents (`createDockerTier({ pickNode, nodeOf, nodes })`),
 * answered from the node table and the liveness store, so every replica agrees.
 *
 * @example
 * const docker = createDockerTier(createNodeDirectory(registry, store));
 */
export function createNodeDirectory(nodes: NodeRegistry, store: SessionStore) {
  const alive = async () => (await nodes.list()).filter((n) => n.alive);
  return {
    /** The live node with the most free slots, preferring one with a warm sandbox of the template. */
    async pickNode(spec: PreviewSpec): Promise<AgentEndpoint | undefined> {
      let best: { id: string; score: number } | undefined;
      for (const n of await alive()) {
        const beat = await nodes.liveness.get(n.id);
        if (!beat) continue;
        const free = beat.capacity.slots - beat.capacity.used;
        if (free <= 0) continue;
        const score = free + ((beat.capacity.warm[spec.template] ?? 0) > 0 ? 1_000 : 0);
        if (!best || score > best.score) best = { id: n.id, score };
      }
      return best ? await nodes.endpoint(best.id) : undefined;
    },
    async nodeOf(previewId: string): Promise<AgentEndpoint | undefined> {
      const s = await store.get(previewId);
      return s?.placement?.tier === 'docker' ? await nodes.endpoint(s.placement.nodeId) : undefined;
    },
    endpoint: (nodeId: string): Promise<AgentEndpoint | undefined> => nodes.endpoint(nodeId),
    async nodes(): Promise<AgentEndpoint[]> {
      const out: AgentEndpoint[] = [];
      for (const n of await alive()) {
        const e = await nodes.endpoint(n.id);
        if (e) out.push(e);
      }
      return out;
    },
  };
}
export type NodeDirectory = ReturnType<typeof createNodeDirectory>;
