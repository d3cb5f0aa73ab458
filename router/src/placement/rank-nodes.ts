import type { NodeCapacity, TemplateName } from '@preview/tiers';

/** What placement knows about one live node when it ranks them. */
export interface NodeView {
  nodeId: string;
  name: string;
  /**
   * Capacity as the agent answered it just now (`fresh`), or, when it did not answer in time, as its
   * last heartbeat said (`heartbeat`, up to NODE_TTL_MS old), or nothing known.
   */
  capacity: { source: 'fresh' | 'heartbeat'; value: NodeCapacity } | { source: 'unknown' };
}

/** A node to try, in order, and why it stands there. */
export interface RankedNode {
  nodeId: string;
  reason: string;
}

/**
 * Orders live nodes for a new preview. Every node is returned: the agent's answer to the claim is
 * the truth (a node that looked full may have freed a slot since; one that looked free may answer
 * `capacity`), the order only decides who is asked first:
 * 1. a node whose capacity is known fresh before one known from a heartbeat, before unknown;
 * 2. within that, a node with room before a full one;
 * 3. warm-pool affinity: a warm sandbox of the template (a warm claim, ~10× faster than a cold one)
 *    before none;
 * 4. spread: more free slots first (the emptiest node takes the next preview);
 * 5. ties by name, so replicas agree.
 *
 * @example
 * rankNodes([{ nodeId: 'a', name: 'n1', capacity: { source: 'fresh', value: { slots: 4, used: 1, warm: {} } } }], 'vite-react');
 * // [{ nodeId: 'a', reason: 'n1: 3 of 4 slots free (fresh), no warm vite-react' }]
 */
export function rankNodes(nodes: NodeView[], template: TemplateName): RankedNode[] {
  const keyed = nodes.map((n) => {
    const cap = n.capacity.source === 'unknown' ? undefined : n.capacity.value;
    const free = cap ? Math.max(0, cap.slots - cap.used) : 0;
    const warm = cap?.warm[template] ?? 0;
    const freshness = n.capacity.source === 'fresh' ? 0 : n.capacity.source === 'heartbeat' ? 1 : 2;
    const reason = cap
      ? `${n.name}: ${free} of ${cap.slots} slots free (${n.capacity.source})${warm > 0 ? `, ${warm} warm ${template}` : `, no warm ${template}`}`
      : `${n.name}: capacity unknown (no answer, no heartbeat)`;
    return { n, free, warm, freshness, reason };
  });
  keyed.sort(
    (a, b) =>
      a.freshness - b.freshness ||
      Number(b.free > 0) - Number(a.free > 0) ||
      Number(b.warm > 0) - Number(a.warm > 0) ||
      b.free - a.free ||
      a.n.name.localeCompare(b.n.name),
  );
  return keyed.map((k) => ({ nodeId: k.n.nodeId, reason: k.reason }));
}
