/**
 * The chaos bench's client against a real router (in-process, real Postgres, served on a loopback
 * port behind the bench's failover balancer). The 1,000-cycle run retried 409s against previews
 * that had failed (402 `edit 409` in bench/results/chaos.json, until each cycle's 8-minute deadline):
 * a failed preview must give its cycle up at once, with the preview's own reason. And a request cut
 * off with a router replica is sent again through the balancer to the other one, and counted.
 */
import type { Server } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { serve } from '@hono/node-server';
import { bearer, createHarness, type Harness, VITE_FILES } from '@preview/router/testkit/harness';
import { createLocalServerTier } from '@preview/router/testkit/local-tier';
import { startFailoverBalancer } from '@preview/router/testkit/processes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientStats, chaosClient, newClientStats, PreviewGone } from './_chaos-client.ts';

let h: Harness;
let server: Server;
let port: number;

beforeAll(async () => {
  h = await createHarness({ tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }) });
  server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as Server;
  await new Promise<void>((r) => (server.listening ? r() : server.once('listening', () => r())));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server?.close();
  await h?.close();
});

const minute = () => Date.now() + 60_000;
const count = (m: Map<string, number>) => Object.fromEntries(m);

/** A ready preview of alice's, and a client of the router at `url` as alice. */
async function setup(url = `http://127.0.0.1:${port}`) {
  const stats = newClientStats();
  const api = chaosClient({ url, jwt: h.alice.jwt, stats });
  const created = await api.create({ files: VITE_FILES, serverOnly: true }, `k-${Math.random()}`, minute());
  await api.settle(created.id, minute());
  return { api, stats, id: created.id };
}

/** The preview's node reports its sandbox gone for good (OOM-killed: not re-placed): it is `failed`. */
async function failIt(id: string) {
  const res = await h.router.app.request(`/v1/nodes/previews/${id}/failed`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(h.nodeCredential) },
    body: JSON.stringify({ reason: 'OOMKilled: out of memory', oomKilled: true }),
  });
  expect(res.status).toBe(200);
}

/** Requests of the stats, by kind: what a step cost. */
const spent = (s: ClientStats) => ({ requests: s.requests, retries: s.retries, errors: count(s.errors) });

describe('a failed preview gives the cycle up at once, with its reason', () => {
  it('edit: 409 preview_ended → PreviewGone(failed, the preview’s error), not retried', async () => {
    const { api, stats, id } = await setup();
    await failIt(id);
    const before = stats.requests;
    const err = await api.edit(id, 1, 'notes/a.txt', 'x', minute()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PreviewGone);
    expect(err).toMatchObject({ id, state: 'failed', reason: 'sandbox stopped: OOMKilled: out of memory' });
    // The edit once (409) and one GET that read why.
    expect(stats.requests - before).toBe(2);
    expect(stats.retries).toBe(0);
    expect(count(stats.errors)).toEqual({ 'edit 409 preview_ended': 1 });
  });

  it('suspend and resume: PreviewGone, not retried until the deadline', async () => {
    const { api, stats, id } = await setup();
    await failIt(id);
    for (const action of ['suspend', 'resume'] as const)
      await expect(api.act(id, action, minute())).rejects.toBeInstanceOf(PreviewGone);
    expect(spent(stats).retries).toBe(0);
  });

  it('settle: a preview that is failed is given up at once', async () => {
    const { api, id } = await setup();
    await failIt(id);
    await expect(api.settle(id, minute())).rejects.toMatchObject({ name: 'PreviewGone', state: 'failed' });
  });
});

describe('an edit whose seq an earlier attempt took', () => {
  it('is `taken` (409 duplicate_seq), counted, and not sent again', async () => {
    const { api, stats, id } = await setup();
    expect(await api.edit(id, 1, 'notes/a.txt', 'one', minute())).toBe('persisted');
    // The same batch again: as when the first answer was lost with a replica and the bench retried.
    expect(await api.edit(id, 1, 'notes/a.txt', 'one', minute())).toBe('taken');
    expect(stats.editsTakenUnacked).toBe(1);
    expect(stats.retries).toBe(0);
  });
});

describe('a request cut off with its router replica', () => {
  it('is sent again at once through the balancer to the other replica, and counted as a failover', async () => {
    // Replica A reads one request and dies with it (its socket reset mid-request, its port then
    // refusing, as after kill -9); the balancer sends the next connection to replica B, the router.
    const dying = createServer((socket) =>
      socket.once('data', () => {
        socket.resetAndDestroy();
        dying.close();
      }),
    );
    await new Promise<void>((r) => dying.listen(0, '127.0.0.1', r));
    const lb = await startFailoverBalancer([(dying.address() as AddressInfo).port, port]);
    try {
      const { id } = await setup();
      const stats = newClientStats();
      const api = chaosClient({ url: lb.url, jwt: h.alice.jwt, stats });
      const v = await api.settle(id, minute());
      expect(v.state).toBe('ready');
      expect(count(stats.failovers)).toEqual({ get: 1 });
      expect(count(stats.errors)).toEqual({});
      expect(stats.requests).toBe(2);
    } finally {
      await lb.close();
    }
  });
});
