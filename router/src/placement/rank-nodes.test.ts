import { describe, expect, it } from 'vitest';
import { type NodeView, rankNodes } from './rank-nodes.ts';

const node = (
  name: string,
  source: 'fresh' | 'heartbeat' | 'unknown',
  slots = 4,
  used = 0,
  warm: Record<string, number> = {},
): NodeView => ({
  nodeId: `id-${name}`,
  name,
  capacity: source === 'unknown' ? { source } : { source, value: { slots, used, warm } },
});

const order = (nodes: NodeView[], template: 'vite-react' | 'vite-vanilla' = 'vite-react') =>
  rankNodes(nodes, template).map((r) => r.nodeId.slice(3));

describe('rankNodes', () => {
  it('spreads: the node with the most free slots first', () => {
    expect(order([node('a', 'fresh', 4, 3), node('b', 'fresh', 4, 1), node('c', 'fresh', 4, 2)])).toEqual([
      'b',
      'c',
      'a',
    ]);
  });

  it('prefers a node with a warm sandbox of the template over a freer one without', () => {
    expect(
      order([node('a', 'fresh', 10, 0), node('b', 'fresh', 4, 3, { 'vite-react': 1 })], 'vite-react'),
    ).toEqual(['b', 'a']);
    // Warm sandboxes of another template do not count.
    expect(
      order([node('a', 'fresh', 10, 0), node('b', 'fresh', 4, 3, { 'vite-vanilla': 1 })], 'vite-react'),
    ).toEqual(['a', 'b']);
  });

  it('asks a node known fresh before one known only from a heartbeat, and never drops a full node', () => {
    expect(
      order([
        node('stale', 'heartbeat', 10, 0),
        node('full', 'fresh', 4, 4),
        node('fresh', 'fresh', 4, 3),
        node('x', 'unknown'),
      ]),
    ).toEqual(['fresh', 'full', 'stale', 'x']);
  });

  it('breaks ties by name (every replica ranks alike) and says why', () => {
    const ranked = rankNodes([node('b', 'fresh', 4, 1), node('a', 'fresh', 4, 1, {})], 'vite-react');
    expect(ranked.map((r) => r.nodeId)).toEqual(['id-a', 'id-b']);
    expect(ranked[0]!.reason).toBe('a: 3 of 4 slots free (fresh), no warm vite-react');
    expect(rankNodes([node('w', 'heartbeat', 4, 0, { 'vite-react': 2 })], 'vite-react')[0]!.reason).toBe(
      'w: 4 of 4 slots free (heartbeat), 2 warm vite-react',
    );
  });
});
