import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { contractSpec } from '@preview/tiers/testkit/contract';
import { afterEach, describe, expect, it } from 'vitest';
import { createNodeDirectory } from './node-directory.ts';
import type { NodeRegistry } from './nodes.ts';
import type { SessionStore } from './store/sessions.ts';

type Capacity = { slots: number; used: number; warm: Record<string, number> };

/** A pool agent's `GET /v1/capacity`, answering `capacity` (or nothing: it is down). */
async function agent(capacity: Capacity | undefined) {
  const server = createServer((req, res) => {
    if (!capacity) return req.socket.destroy();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(capacity));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('node directory: candidates from fresh capacity', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  it("ranks by the agents' own answers now, falling back to a heartbeat only for a node that does not answer", async () => {
    // Heartbeats say: n1 full, n2 empty. The agents say now: n1 has room and a warm sandbox, n2 is full.
    const n1 = await agent({ slots: 4, used: 1, warm: { 'vite-react': 1 } });
    const n2 = await agent({ slots: 4, used: 4, warm: {} });
    const n3 = await agent(undefined);
    closers.push(n1.close, n2.close, n3.close);
    const urls: Record<string, string> = { n1: n1.url, n2: n2.url, n3: n3.url };
    const beats: Record<string, Capacity> = {
      n1: { slots: 4, used: 4, warm: {} },
      n2: { slots: 4, used: 0, warm: {} },
      n3: { slots: 4, used: 0, warm: { 'vite-react': 3 } },
    };
    const registry = {
      list: async () =>
        ['n1', 'n2', 'n3', 'dead'].map((id) => ({
          id,
          name: id,
          url: urls[id] ?? '',
          runtime: 'docker',
          alive: id !== 'dead',
        })),
      endpoint: async (id: string) => ({ nodeId: id, url: urls[id]!, token: 'tok' }),
      liveness: { get: async (id: string) => ({ capacity: beats[id]! }) },
    } as unknown as NodeRegistry;
    const directory = createNodeDirectory(registry, {} as SessionStore, { capacityTimeoutMs: 5000 });
    const ranked = await directory.candidates({ ...contractSpec(), template: 'vite-react' });
    expect(ranked.map((c) => [c.nodeId, c.reason])).toEqual([
      ['n1', 'n1: 3 of 4 slots free (fresh), 1 warm vite-react'],
      ['n2', 'n2: 0 of 4 slots free (fresh), no warm vite-react'],
      ['n3', 'n3: 4 of 4 slots free (heartbeat), 3 warm vite-react'],
    ]);
    expect((await directory.pickNode({ ...contractSpec(), template: 'vite-react' }))?.nodeId).toBe('n1');
  });
});
