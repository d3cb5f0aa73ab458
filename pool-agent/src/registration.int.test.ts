import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { captureLog } from '@preview/testkit';
import { NodeHeartbeat, NodeRegistration } from '@preview/tiers';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, testConfig, until } from '../test/fixtures.ts';
import { register } from './registration.ts';

interface FakeRouterState {
  registrations: NodeRegistration[];
  heartbeats: Array<{ auth: string | undefined; body: NodeHeartbeat }>;
  sessionsAsked: number;
  credential: string;
  failures: Array<{ previewId: string; auth: string | undefined; body: unknown }>;
  /** The node id the last registration was answered with. */
  nodeId: string;
}

/** A small real HTTP server speaking the router's node routes (the router itself is another package). */
async function routerServer(
  joinToken: string,
  port = 0,
): Promise<{ url: string; state: FakeRouterState; close: () => Promise<void> }> {
  const state: FakeRouterState = {
    registrations: [],
    heartbeats: [],
    sessionsAsked: 0,
    credential: `cred_${randomUUID()}`,
    failures: [],
    nodeId: '',
  };
  const read = (req: IncomingMessage) =>
    new Promise<unknown>((resolve) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => resolve(b ? JSON.parse(b) : undefined));
    });
  const server: Server = createServer(async (req, res) => {
    const send = (status: number, body: unknown) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.method === 'POST' && req.url === '/v1/nodes/register') {
      const r = NodeRegistration.safeParse(await read(req));
      if (!r.success) return send(400, { error: { code: 'invalid_body', message: r.error.message } });
      if (r.data.joinToken !== joinToken)
        return send(401, { error: { code: 'unauthorized', message: 'bad join token' } });
      state.registrations.push(r.data);
      state.nodeId = randomUUID();
      return send(200, { nodeId: state.nodeId, credential: state.credential, heartbeatMs: 50 });
    }
    const auth = req.headers.authorization;
    if (req.method === 'POST' && req.url === '/v1/nodes/heartbeat') {
      const body = NodeHeartbeat.parse(await read(req));
      state.heartbeats.push({ auth, body });
      return send(auth === `Bearer ${state.credential}` ? 200 : 401, {});
    }
    const failed = /^\/v1\/nodes\/previews\/([^/]+)\/failed$/.exec(req.url ?? '');
    if (req.method === 'POST' && failed) {
      state.failures.push({ previewId: decodeURIComponent(failed[1]!), auth, body: await read(req) });
      return send(auth === `Bearer ${state.credential}` ? 200 : 401, {});
    }
    if (req.method === 'GET' && req.url === '/v1/nodes/sessions') {
      state.sessionsAsked++;
      return send(200, { sessions: [] });
    }
    send(404, {});
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe('registration with the router', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('reports a failed preview (e.g. OOM-killed) to the router with its node credential at once', async () => {
    const joinToken = `join_${randomUUID()}`;
    const router = await routerServer(joinToken);
    cleanups.push(router.close);
    const reg = await register({
      routerUrl: router.url,
      joinToken,
      name: 'node-report',
      url: 'http://127.0.0.1:9',
      runtime: 'process',
      capacity: () => ({ slots: 1, used: 1, warm: {} }),
      sessions: () => [],
    });
    cleanups.push(async () => reg.stop());
    const id = randomUUID();
    expect(await reg.reportFailed(id, 'OOMKilled: out of memory (limit 512 MiB)', true)).toBe(true);
    expect(router.state.failures).toEqual([
      {
        previewId: id,
        auth: `Bearer ${router.state.credential}`,
        body: { reason: 'OOMKilled: out of memory (limit 512 MiB)', oomKilled: true },
      },
    ]);
  });

  it('registers with the join token, heartbeats capacity, and accepts the credential as its API token', async () => {
    const joinToken = `join_${randomUUID()}`;
    const router = await routerServer(joinToken);
    cleanups.push(router.close);
    const config = testConfig({
      ROUTER_URL: router.url,
      ROUTER_JOIN_TOKEN: joinToken,
      WARM_POOL: 'vite-vanilla=0',
      NODE_SLOTS: '3',
    });
    const { AGENT_TOKEN: _unused, ...noToken } = config;
    const { agent, stop } = await startAgent({ ...noToken, AGENT_TOKEN: undefined });
    cleanups.push(stop);
    expect(router.state.registrations).toHaveLength(1);
    const reg = router.state.registrations[0]!;
    expect(reg.name).toBe(config.NODE_NAME);
    expect(reg.runtime).toBe('docker');
    expect(reg.capacity).toEqual({ slots: 3, used: 0, warm: {} });
    expect(reg.url).toBe(agent.url);
    // Reconcile asked the router which sessions are live.
    expect(router.state.sessionsAsked).toBe(1);
    await until(async () => router.state.heartbeats.length >= 2, 10_000, 'two heartbeats');
    const hb = router.state.heartbeats[0]!;
    expect(hb.auth).toBe(`Bearer ${router.state.credential}`);
    expect(hb.body.capacity.slots).toBe(3);
    expect(hb.body.sessions).toEqual([]);
    const ok = await fetch(`${agent.url}/v1/capacity`, {
      headers: { authorization: `Bearer ${router.state.credential}` },
    });
    expect(ok.status).toBe(200);
    const bad = await fetch(`${agent.url}/v1/capacity`, {
      headers: { authorization: `Bearer ${joinToken}` },
    });
    expect(bad.status).toBe(401);
  });

  it("names the node on every line, and the router's nodeId once registered", async () => {
    const joinToken = `join_${randomUUID()}`;
    const router = await routerServer(joinToken);
    cleanups.push(router.close);
    const { lines, stream: sink } = captureLog();
    const config = testConfig({
      ROUTER_URL: router.url,
      ROUTER_JOIN_TOKEN: joinToken,
      WARM_POOL: 'vite-vanilla=1',
    });
    const { stop } = await startAgent(
      { ...config, AGENT_TOKEN: undefined },
      { log: pino({ level: 'info' }, sink) },
    );
    cleanups.push(stop);
    await until(async () => lines.some((l) => l['msg'] === 'warm sandbox ready'), 60_000, 'a warm sandbox');
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) expect(l['node']).toBe(config.NODE_NAME);
    const ready = lines.find((l) => l['msg'] === 'warm sandbox ready')!;
    expect(ready['nodeId']).toBe(router.state.nodeId);
    expect(ready['sandboxId']).toEqual(expect.any(String));
  });

  it('keeps retrying while the router is not up yet', async () => {
    const joinToken = `join_${randomUUID()}`;
    const probe = await routerServer(joinToken);
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const config = testConfig({
      ROUTER_URL: probe.url,
      ROUTER_JOIN_TOKEN: joinToken,
      WARM_POOL: 'vite-vanilla=0',
    });
    const starting = startAgent({ ...config, AGENT_TOKEN: undefined });
    await new Promise((r) => setTimeout(r, 700));
    const router = await routerServer(joinToken, port);
    cleanups.push(router.close);
    const { stop } = await starting;
    cleanups.push(stop);
    expect(router.state.registrations).toHaveLength(1);
  });

  it('fails to start with a join token the router refuses', async () => {
    const router = await routerServer(`join_${randomUUID()}`);
    cleanups.push(router.close);
    const config = testConfig({
      ROUTER_URL: router.url,
      ROUTER_JOIN_TOKEN: `wrong_${randomUUID()}`,
      WARM_POOL: 'vite-vanilla=0',
    });
    await expect(startAgent(config)).rejects.toThrow(/join token/);
  });
});
