/**
 * Issue 10, example 5: under `npm start` with Docker, the express-pg template's page reached its
 * database at the host's loopback (`connect ECONNREFUSED 127.0.0.1:<port>`): the embedded agent
 * never started the database forwarder. Here the router (real db-isolation on real Postgres, the
 * docker tier) and its embedded agent (`startEmbeddedAgent`, the Docker runtime) run as `npm start`
 * wires them; a full-stack preview's page writes and reads its own table through the router's proxy.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import type { Agent } from '@preview/pool-agent';
import { requirePrerequisites, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { pickRuntime, startEmbeddedAgent } from './embedded-agent.ts';

const TEMPLATE = join(import.meta.dirname, '..', '..', 'templates', 'express-pg');
const hasImage =
  (await pickRuntime({ socketPath: '/var/run/docker.sock', image: TEST_PREVIEW_IMAGE })) === 'docker';

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

describe('npm start with Docker: the embedded agent forwards full-stack previews to their schema', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  let agent: Agent | undefined;
  const nodeName = `embedded-db-${randomBytes(4).toString('hex')}`;

  const missing =
    !hasImage &&
    `the Docker engine with the preview image ${TEST_PREVIEW_IMAGE}: run scripts/test-env.sh (it builds it)`;
  beforeEach(() => requirePrerequisites(missing));

  beforeAll(async () => {
    if (missing) return;
    h = await createHarness({
      databases: true,
      tiers: ({ nodeDirectory }) => ({
        browser: createBrowserTier(),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    // The harness's placeholder node has no agent behind it: only the embedded agent is placed on.
    await h.router.nodes.liveness.forget(h.nodeId);
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    port = (server.address() as AddressInfo).port;
    agent = await startEmbeddedAgent({
      nodeName,
      routerUrl: `http://127.0.0.1:${port}`,
      joinToken: h.joinToken,
      image: TEST_PREVIEW_IMAGE,
      logLevel: 'silent',
      settings: { WARM_POOL: 'express-pg=1', NODE_SLOTS: '3', PREVIEW_NETWORK: 'preview-net-test' },
      log: pino({ level: 'silent' }),
    });
    await agent.pools.settled();
  }, 300_000);

  afterAll(async () => {
    await agent?.close({ removeSandboxes: true }).catch(() => {});
    const docker = testDocker();
    for (const c of await docker
      .listContainers({ all: true, filters: { label: [`preview.node=${nodeName}`] } })
      .catch(() => []))
      await docker
        .getContainer(c.Id)
        .remove({ force: true })
        .catch(() => {});
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
  });

  it('the express-pg page writes and reads its own table in preview_<hex>', {
    timeout: 300_000,
  }, async () => {
    expect(agent?.runtime.kind).toBe('docker');
    const files = Object.fromEntries(
      ['package.json', 'package-lock.json', 'server.js'].map((f) => [
        f,
        readFileSync(join(TEMPLATE, f), 'utf8'),
      ]),
    );
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files, serverOnly: true }),
    });
    const p = (await res.json()) as { id: string; tier: string; previewUrl: string };
    expect(res.status, JSON.stringify(p)).toBe(201);
    expect(p.tier, JSON.stringify(p)).toBe('docker');

    const host = `${p.id}.preview.localhost:${port}`;
    const link = await get(port, host, `/?token=${new URL(p.previewUrl).searchParams.get('token')}`);
    expect(link.status).toBe(302);
    const cookie = link.headers['set-cookie']![0]!.split(';')[0]!;
    const visit = async () => {
      const until = Date.now() + 120_000;
      for (;;) {
        const page = await get(port, host, '/', { cookie });
        if (page.body.includes('data-testid="db"') || Date.now() > until) return page.body;
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    // Readiness probes may have visited already: each page view adds one row and shows the count.
    const visits = (body: string) => {
      const m = /Database connected: (\d+) visits\./.exec(body);
      if (!m) throw new Error(`the page did not reach its database: ${body.slice(0, 1000)}`);
      return Number(m[1]);
    };
    const first = visits(await visit());
    expect(first).toBeGreaterThanOrEqual(1);
    const second = visits(await visit());
    expect(second).toBe(first + 1);

    // The rows are in the preview's own schema, as the router's database sees it.
    const schema = `preview_${p.id.replaceAll('-', '')}`;
    const { rows } = await h.db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.visits`);
    expect(rows[0].n).toBe(second);
  });
});
