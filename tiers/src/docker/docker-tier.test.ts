import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { contractSpec } from '../../testkit/contract.ts';
import { CapacityError, InvalidInputError, NotFoundError, TierUnavailableError } from '../errors.ts';
import { type AgentEndpoint, createDockerTier } from './index.ts';

/** A real HTTP server that answers every request with `status` and `body`, recording what it got. */
async function agentStub(status: number, body: unknown) {
  const seen: Array<{ method?: string; url?: string; auth?: string }> = [];
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, auth: req.headers.authorization });
    req.resume();
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('docker tier: errors that send placement to the next tier', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  const tierFor = (node: AgentEndpoint | undefined) =>
    createDockerTier({
      pickNode: async () => node,
      nodeOf: async () => node,
      nodes: async () => (node ? [node] : []),
    });

  it('no node with room → CapacityError', async () => {
    await expect(tierFor(undefined).create(contractSpec())).rejects.toBeInstanceOf(CapacityError);
  });

  it('an agent that answers 503 capacity → CapacityError; another 503 → TierUnavailableError', async () => {
    const full = await agentStub(503, { error: { code: 'capacity', message: 'node is full' } });
    closers.push(full.close);
    await expect(
      tierFor({ nodeId: 'n1', url: full.url, token: 't0k' }).create(contractSpec()),
    ).rejects.toBeInstanceOf(CapacityError);
    expect(full.seen[0]).toMatchObject({ method: 'POST', url: '/v1/previews', auth: 'Bearer t0k' });
    const down = await agentStub(503, { error: { code: 'tier_unavailable', message: 'docker engine down' } });
    closers.push(down.close);
    await expect(
      tierFor({ nodeId: 'n2', url: down.url, token: 't' }).create(contractSpec()),
    ).rejects.toBeInstanceOf(TierUnavailableError);
  });

  it('an unreachable agent → TierUnavailableError; capacity is unknown, not "full" (the claim decides)', async () => {
    const gone = await agentStub(200, {});
    await gone.close();
    const tier = tierFor({ nodeId: 'n3', url: gone.url, token: 't' });
    await expect(tier.create(contractSpec())).rejects.toBeInstanceOf(TierUnavailableError);
    await expect(tier.capacity()).rejects.toBeInstanceOf(TierUnavailableError);
    // With no live node at all the tier is simply empty.
    expect(await tierFor(undefined).capacity()).toEqual({ available: 0, total: 0, warm: {} });
  });

  it('asks the next node when one answers capacity or is unreachable, and says which were skipped', async () => {
    const full = await agentStub(503, { error: { code: 'capacity', message: 'node is full' } });
    const gone = await agentStub(200, {});
    await gone.close();
    const free = await agentStub(201, { containerId: 'c1', upstream: 'http://agent/up' });
    closers.push(full.close, free.close);
    const nodes = [
      { nodeId: 'n-full', url: full.url, token: 't', reason: 'n-full: 2 of 4 slots free (heartbeat)' },
      { nodeId: 'n-gone', url: gone.url, token: 't' },
      { nodeId: 'n-free', url: free.url, token: 't', reason: 'n-free: 1 of 4 slots free (fresh)' },
    ];
    const tier = createDockerTier({
      pickNode: async () => nodes[0],
      candidates: async () => nodes,
      nodeOf: async () => undefined,
    });
    const placement = await tier.create(contractSpec());
    expect(placement).toMatchObject({ tier: 'docker', nodeId: 'n-free', containerId: 'c1' });
    expect(placement.tier === 'docker' && placement.reason).toMatch(
      /^n-free: 1 of 4 slots free \(fresh\); after n-full answered capacity \(node is full\); after n-gone unavailable/,
    );
    expect(full.seen).toHaveLength(1);
    expect(free.seen).toHaveLength(1);
  });

  it('every node answering capacity → CapacityError naming them', async () => {
    const a = await agentStub(503, { error: { code: 'capacity', message: 'full' } });
    const b = await agentStub(503, { error: { code: 'capacity', message: 'full' } });
    closers.push(a.close, b.close);
    const nodes = [
      { nodeId: 'a', url: a.url, token: 't' },
      { nodeId: 'b', url: b.url, token: 't' },
    ];
    const tier = createDockerTier({
      pickNode: async () => nodes[0],
      candidates: async () => nodes,
      nodeOf: async () => undefined,
    });
    const err = await tier.create(contractSpec()).catch((e) => e);
    expect(err).toBeInstanceOf(CapacityError);
    expect(err.message).toBe(
      'no docker node took the preview: a answered capacity (full); b answered capacity (full)',
    );
  });

  it('maps 400 to InvalidInputError and 404 to NotFoundError; destroy/status of an unknown preview', async () => {
    const bad = await agentStub(400, { error: { code: 'invalid_body', message: 'files.x: bad' } });
    closers.push(bad.close);
    await expect(tierFor({ nodeId: 'n', url: bad.url, token: 't' }).create(contractSpec())).rejects.toThrow(
      InvalidInputError,
    );
    const none = await agentStub(404, { error: { code: 'preview_not_found', message: 'no preview' } });
    closers.push(none.close);
    const tier = tierFor({ nodeId: 'n', url: none.url, token: 't' });
    await expect(tier.suspend('p1')).rejects.toBeInstanceOf(NotFoundError);
    expect(await tier.destroy('p1')).toBe(false);
    expect(await tier.status('p1')).toBeUndefined();
  });

  it('destroy with nodeId asks that node, not the one the session is placed on', async () => {
    const placed = await agentStub(200, { destroyed: true });
    const stale = await agentStub(200, { destroyed: true });
    closers.push(placed.close, stale.close);
    const nodes: Record<string, AgentEndpoint> = {
      placed: { nodeId: 'placed', url: placed.url, token: 'tp' },
      stale: { nodeId: 'stale', url: stale.url, token: 'ts' },
    };
    const tier = createDockerTier({
      pickNode: async () => nodes['placed'],
      nodeOf: async () => nodes['placed'],
      endpoint: async (id) => nodes[id],
    });
    expect(await tier.destroy('p1', { nodeId: 'stale' })).toBe(true);
    expect(stale.seen).toEqual([{ method: 'DELETE', url: '/v1/previews/p1', auth: 'Bearer ts' }]);
    expect(placed.seen).toEqual([]);
    // An unknown node holds nothing.
    expect(await tier.destroy('p1', { nodeId: 'gone' })).toBe(false);
    expect(await tier.destroy('p1')).toBe(true);
    expect(placed.seen).toHaveLength(1);
  });

  it('checks its options at construction', () => {
    expect(() => createDockerTier({} as never)).toThrow(/pickNode and nodeOf/);
  });
});
