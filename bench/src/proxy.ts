/**
 * `npm run bench -- proxy [--n 200] [--loads 5]`: what the preview host costs over the sandbox
 * itself. A router (real Postgres, the docker tier) with a pool agent in its own process on the
 * local engine, as `npm start` runs them (embedded mode: the proxy goes straight to the sandbox).
 * One vite-react preview; then
 * - one module (`/src/App.jsx`, transformed by Vite) fetched `n` times over a kept-alive
 *   connection, through `<id>.preview.localhost` and from the sandbox's port directly, interleaved;
 * - a cold page load in Chromium (a fresh browser context: empty cache) until the app rendered,
 *   `loads` times each way, interleaved, after one untimed load each (Vite's own first transform).
 * Needs the preview image (`PREVIEW_IMAGE`, default preview-base:dev) and /usr/bin/chromium.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { createAgent, createDockerRuntime, loadConfig as loadAgentConfig } from '@preview/pool-agent';
import { createRouter, loadConfig, migrate, signUserJwt } from '@preview/router';
import { CHROMIUM_ARGS, CHROMIUM_PATH, createTestDatabase } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import Docker from 'dockerode';
import pino from 'pino';
import { chromium } from 'playwright-core';
import { BENCH_LABEL, IMAGE } from './_agent.ts';
import { percentile, round1 } from './stats.ts';

const TEMPLATE = join(import.meta.dirname, '../../templates/vite-react');

const arg = (args: string[], name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};

/** The vite-react template's files, as a user starts from them. */
function project(): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(TEMPLATE, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      if (name === 'node_modules') continue;
      if (statSync(join(TEMPLATE, path)).isDirectory()) walk(path);
      else files[path] = readFileSync(join(TEMPLATE, path), 'utf8');
    }
  };
  walk('');
  return files;
}

/** One GET over `agent` (kept alive); resolves with the status once the body is read. */
function get(agent: http.Agent, url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, headers, agent },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

export default async function proxy(args: string[]): Promise<object> {
  const n = arg(args, 'n', 200);
  const loads = arg(args, 'loads', 5);
  const db = await createTestDatabase({ max: 10 });
  db.pool.on('error', () => {});
  await migrate(db.pool);
  const secret = randomBytes(32).toString('hex');
  const joinToken = randomBytes(16).toString('hex');
  const log = pino({ level: 'silent' });
  const router = await createRouter({
    config: loadConfig({
      SUPABASE_JWT_SECRET: secret,
      PREVIEW_TOKEN_SECRET: `${secret}-p`,
      NODE_JOIN_TOKEN: joinToken,
      RATE_LIMIT_USER_PER_MIN: '1000000',
      RATE_LIMIT_IP_PER_MIN: '1000000',
    }),
    pool: db.pool,
    tiers: ({ nodeDirectory }) => ({ browser: createBrowserTier(), docker: createDockerTier(nodeDirectory) }),
    log,
    jobs: false,
  });
  const server = serve({ fetch: router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
  await new Promise((r) => server.once('listening', r));
  router.attach(server);
  const port = (server.address() as AddressInfo).port;
  const config = loadAgentConfig({
    AGENT_PORT: '0',
    NODE_NAME: `bench-proxy-${randomBytes(4).toString('hex')}`,
    ROUTER_URL: `http://127.0.0.1:${port}`,
    ROUTER_JOIN_TOKEN: joinToken,
    PREVIEW_IMAGE: IMAGE,
    PREVIEW_NETWORK: 'preview-net-bench',
    NODE_SLOTS: '2',
    WARM_POOL: 'vite-react=1',
    LOG_LEVEL: 'silent',
  });
  const runtime = await createDockerRuntime({
    docker: new Docker({ socketPath: config.DOCKER_SOCKET }),
    node: config.NODE_NAME,
    image: IMAGE,
    network: config.PREVIEW_NETWORK,
    uid: config.PREVIEW_UID,
    memoryMiB: 1024,
    cpus: 1,
    pidsLimit: 512,
    tmpfsMiB: 128,
    labels: { [BENCH_LABEL]: '1' },
  });
  const agent = await createAgent({ config, runtime, log });
  // Embedded mode, as router/src/main.ts wires it.
  router.proxy.setLocalAgent({ nodeId: agent.nodeId, upstream: (id) => agent.upstream(id) });
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await agent.pools.populate();
    await agent.pools.settled();
    const jwt = await signUserJwt({ secret, userId: randomUUID() });
    const created = await router.app.request('/v1/previews', {
      method: 'POST',
      headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
      body: JSON.stringify({ files: project(), template: 'vite-react', serverOnly: true }),
    });
    const p = (await created.json()) as { id: string; tier: string; previewUrl: string };
    if (created.status !== 201 || p.tier !== 'docker') throw new Error(`create: ${JSON.stringify(p)}`);
    await router.previews.waitReady(p.id, 60_000);
    const direct = agent.upstream(p.id);
    if (!direct) throw new Error('the agent has no sandbox for the preview');
    const host = `${p.id}.preview.localhost:${port}`;
    const link = new URL(p.previewUrl);
    const exchanged = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port, path: `/${link.search}`, headers: { host } }, resolve)
        .on('error', reject),
    );
    exchanged.resume();
    const cookie = String(exchanged.headers['set-cookie']?.[0] ?? '').split(';')[0]!;
    if (!cookie.startsWith('__preview_access=')) throw new Error('no access cookie from the preview link');

    // One module, n times each way, interleaved, over one kept-alive connection per side.
    const proxied = `http://127.0.0.1:${port}/src/App.jsx`;
    const directUrl = `${direct}/src/App.jsx`;
    const viaHost = { host, cookie, 'sec-fetch-dest': 'script' };
    const directAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 20; i++) {
      if ((await get(keepAlive, proxied, viaHost)) !== 200)
        throw new Error('proxied module did not answer 200');
      if ((await get(directAgent, directUrl, {})) !== 200)
        throw new Error('direct module did not answer 200');
    }
    const times = { direct: [] as number[], proxied: [] as number[] };
    for (let i = 0; i < n; i++) {
      let t = performance.now();
      await get(directAgent, directUrl, {});
      times.direct.push(performance.now() - t);
      t = performance.now();
      await get(keepAlive, proxied, viaHost);
      times.proxied.push(performance.now() - t);
    }
    directAgent.destroy();

    // Cold page loads in Chromium (fresh context each), until the app rendered its title.
    const [name, value] = [cookie.slice(0, cookie.indexOf('=')), cookie.slice(cookie.indexOf('=') + 1)];
    const pageLoad = async (url: string, withCookie: boolean) => {
      const context = await browser.newContext();
      try {
        if (withCookie)
          await context.addCookies([
            {
              name,
              value,
              domain: `${p.id}.preview.localhost`,
              path: '/',
              httpOnly: true,
              secure: true,
              sameSite: 'None',
            },
          ]);
        const page = await context.newPage();
        const t = performance.now();
        await page.goto(url);
        await page.waitForSelector('[data-testid="title"]', { timeout: 30_000 });
        const ms = performance.now() - t;
        // Where the time went (stderr): the document's first byte, then the slowest resources.
        const timing = await page.evaluate(() => {
          const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
          const res = performance.getEntriesByType('resource') as PerformanceResourceTiming[];
          return {
            ttfb: Math.round(nav.responseStart),
            resources: res.length,
            lastResponseEnd: Math.round(Math.max(0, ...res.map((r) => r.responseEnd))),
            slowest: res
              .sort((a, b) => b.duration - a.duration)
              .slice(0, 3)
              .map((r) => `${new URL(r.name).pathname} ${Math.round(r.duration)}ms`),
          };
        });
        process.stderr.write(
          `${withCookie ? 'proxied' : 'direct '} load ${Math.round(ms)} ms ${JSON.stringify(timing)}\n`,
        );
        return ms;
      } finally {
        await context.close();
      }
    };
    const pageUrl = `http://${host}/`;
    await pageLoad(`${direct}/`, false);
    await pageLoad(pageUrl, true);
    const page = { direct: [] as number[], proxied: [] as number[] };
    for (let i = 0; i < loads; i++) {
      page.direct.push(await pageLoad(`${direct}/`, false));
      page.proxied.push(await pageLoad(pageUrl, true));
    }
    return {
      direct_p50_ms: round1(percentile(times.direct, 50)),
      proxied_p50_ms: round1(percentile(times.proxied, 50)),
      page_load_direct_ms: round1(percentile(page.direct, 50)),
      page_load_proxied_ms: round1(percentile(page.proxied, 50)),
      direct_p99_ms: round1(percentile(times.direct, 99)),
      proxied_p99_ms: round1(percentile(times.proxied, 99)),
      n,
      loads,
      goal: 'proxied_p50_ms within 1 ms of direct_p50_ms',
    };
  } finally {
    keepAlive.destroy();
    await browser.close();
    await agent.close({ removeSandboxes: true }).catch(() => {});
    for (const box of await runtime.list().catch(() => [])) await runtime.remove(box.id).catch(() => {});
    await runtime.close().catch(() => {});
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await router.close();
    await db.drop();
  }
}
