import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createBrowserTier } from '@preview/tiers';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness, silent, VITE_FILES } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';
import { loadConfig } from './config.ts';
import { createRouter, type PreviewRouter } from './router.ts';

async function listen(router: PreviewRouter) {
  const server = serve({ fetch: router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
  await new Promise((r) => server.once('listening', r));
  router.attach(server);
  return { server, port: (server.address() as AddressInfo).port };
}

function get(port: number, host: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>(
    (resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        })
        .on('error', reject);
    },
  );
}

describe('two router replicas on the same Postgres and Redis', () => {
  let h: Harness;
  let b: PreviewRouter;
  let poolB: pg.Pool;
  const servers: http.Server[] = [];
  // The server-side fleet both replicas reach (as two routers reach the same pool agents).
  const fleet = createLocalServerTier({ autoReady: true });

  beforeAll(async () => {
    h = await createHarness({ redis: true, tiers: () => ({ browser: createBrowserTier(), docker: fleet }) });
    // Replica B: its own Postgres pool, its own router instance, the same database, Redis and secrets.
    poolB = new pg.Pool({ connectionString: h.db.url, max: 5 });
    poolB.on('error', () => {});
    const cfg = h.router.config;
    b = await createRouter({
      config: loadConfig(cfg),
      pool: poolB,
      redis: h.redis,
      tiers: { browser: createBrowserTier(), docker: fleet },
      log: silent,
      jobs: false,
    });
  });
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
    await b?.close();
    await poolB?.end();
    await h?.close();
  });

  it('a preview created on A is read, proxied, streamed and deleted through B', async () => {
    const a = await listen(h.router);
    const bb = await listen(b);
    servers.push(a.server, bb.server);
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: VITE_FILES, serverOnly: true }),
    });
    const p = (await res.json()) as { id: string; previewUrl: string };
    expect(res.status).toBe(201);

    // B sees it (and still hides it from bob).
    const viaB = await b.app.request(`/v1/previews/${p.id}`, { headers: bearer(h.alice.jwt) });
    expect(viaB.status).toBe(200);
    expect(((await viaB.json()) as { id: string }).id).toBe(p.id);
    expect((await b.app.request(`/v1/previews/${p.id}`, { headers: bearer(h.bob.jwt) })).status).toBe(404);

    // A's link token opens the preview through B's proxy.
    const host = `${p.id}.preview.localhost:${bb.port}`;
    const link = await get(bb.port, host, `/?token=${new URL(p.previewUrl).searchParams.get('token')}`);
    expect(link.status).toBe(302);
    const cookie = link.headers['set-cookie']![0]!.split(';')[0]!;
    const until = Date.now() + 20_000;
    let page = await get(bb.port, host, '/', { cookie });
    while (page.status !== 200 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 100));
      page = await get(bb.port, host, '/', { cookie });
    }
    expect(page.body).toBe(VITE_FILES['index.html']);

    // B's SSE stream hears A's state change (Redis pub/sub).
    const ac = new AbortController();
    const sse = await fetch(`http://127.0.0.1:${bb.port}/v1/previews/${p.id}/events`, {
      headers: bearer(h.alice.jwt),
      signal: ac.signal,
    });
    expect(sse.status).toBe(200);
    const reader = sse.body!.getReader();
    let text = '';
    const heard = (async () => {
      const dec = new TextDecoder();
      while (!text.includes('"state":"ended"')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += dec.decode(value);
      }
    })();
    // The stream subscribes before it sends its first snapshot: once that arrives, B is listening.
    while (!text.includes('event: state')) await new Promise((r) => setTimeout(r, 20));
    expect(
      (await h.router.app.request(`/v1/previews/${p.id}`, { method: 'DELETE', headers: bearer(h.alice.jwt) }))
        .status,
    ).toBe(204);
    await heard;
    ac.abort();
    expect(text).toContain('"state":"ended"');
    expect(await fleet.status(p.id)).toBeUndefined();
    // The deletion is visible from B, and a second delete through B is repeat-safe.
    expect(
      (await b.app.request(`/v1/previews/${p.id}`, { method: 'DELETE', headers: bearer(h.alice.jwt) }))
        .status,
    ).toBe(204);
  });

  it('rate limits and node liveness are shared through Redis', async () => {
    const reg = await b.nodes.register({
      joinToken: h.joinToken,
      name: 'replica-node',
      url: 'http://127.0.0.1:9',
      capacity: { slots: 2, used: 0, warm: {} },
      runtime: 'docker',
    });
    expect(await h.router.nodes.liveness.isAlive(reg.nodeId)).toBe(true);
    // The node's credential (issued by B) authenticates on A too.
    const hb = await h.router.app.request('/v1/nodes/heartbeat', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(reg.credential) },
      body: JSON.stringify({ capacity: { slots: 2, used: 1, warm: {} }, sessions: [], at: Date.now() }),
    });
    expect(hb.status).toBe(200);
    // Both replicas compute the same agent credential from the stored nonce.
    expect((await h.router.nodes.endpoint(reg.nodeId))?.token).toBe(reg.credential);
    expect((await b.nodes.endpoint(reg.nodeId))?.token).toBe(reg.credential);
  });
});
