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
      // Dependencies the app adds install from the npm registry (this network intercepts TLS).
      extraCaCerts: '/etc/ssl/certs/ca-certificates.crt',
      settings: {
        WARM_POOL: 'express-pg=1',
        NODE_SLOTS: '3',
        PREVIEW_NETWORK: 'preview-net-test',
        READY_TIMEOUT_MS: '300000',
      },
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

  /** Creates a full-stack preview through the API and returns a GET of its pages through the proxy. */
  async function open(files: Record<string, string>) {
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
    /** The page at `path` once its body holds `marker` (the app may still be installing or starting). */
    const page = async (path: string, marker: string, waitMs = 120_000) => {
      const until = Date.now() + waitMs;
      for (;;) {
        const r = await get(port, host, path, { cookie });
        if (r.body.includes(marker) || Date.now() > until) return r.body;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    };
    return { id: p.id, schema: `preview_${p.id.replaceAll('-', '')}`, page };
  }

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
    const { schema, page } = await open(files);
    // Readiness probes may have visited already: each page view adds one row and shows the count.
    const visits = (body: string) => {
      const m = /Database connected: (\d+) visits\./.exec(body);
      if (!m) throw new Error(`the page did not reach its database: ${body.slice(0, 1000)}`);
      return Number(m[1]);
    };
    const first = visits(await page('/', 'data-testid="db"'));
    expect(first).toBeGreaterThanOrEqual(1);
    const second = visits(await page('/', 'data-testid="db"'));
    expect(second).toBe(first + 1);

    // The rows are in the preview's own schema, as the router's database sees it.
    const { rows } = await h.db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.visits`);
    expect(rows[0].n).toBe(second);
  });

  it('an app that adds Knex runs its migrations and seed at start with DATABASE_URL unchanged, in its own schema; public is closed to it', {
    timeout: 600_000,
  }, async () => {
    const { schema, page } = await open(KNEX_APP);
    const body = await page('/', 'data-testid="todos"', 480_000);
    expect(body, body.slice(0, 2000)).toContain(
      '<ul data-testid="todos"><li>write the migration</li><li>seed it</li></ul>',
    );
    const probe = JSON.parse(await page('/probe', '"currentSchema"')) as Record<string, unknown>;
    expect(probe).toEqual({
      currentSchema: schema,
      searchPath: schema,
      migrationsTable: schema,
      // Prisma's form: the same forwarded host and port, the schema named.
      prismaSchema: schema,
      prismaSameHost: true,
      readPublic: '42501',
      writePublic: '42501',
      createInPublic: '42501',
    });
    // The router's database sees the migrated and seeded table, and Knex's ledger, in the schema.
    const { rows } = await h.db.pool.query(`SELECT title FROM ${schema}.todos ORDER BY id`);
    expect(rows.map((r) => r.title)).toEqual(['write the migration', 'seed it']);
    const ledger = await h.db.pool.query(`SELECT name FROM ${schema}.knex_migrations`);
    expect(ledger.rows.map((r) => r.name)).toEqual(['20250101000000_todos.cjs']);
    const inPublic = await h.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('todos', 'knex_migrations', 'evil')`,
    );
    expect(inPublic.rows[0].n).toBe(0);
  });
});

/**
 * An Express app as an AI app builder writes one: Knex added to its dependencies, migrations and a
 * seed (CommonJS files, Knex's default loader) run by the app itself at start, then its rows served.
 * `/probe` reports where the connection lands and what `public` allows (SQLSTATE of each attempt).
 */
const KNEX_APP: Record<string, string> = {
  'package.json': JSON.stringify(
    {
      name: 'todo-api',
      private: true,
      type: 'module',
      main: 'server.js',
      dependencies: { express: '^5.1.0', pg: '^8.16.0', knex: '^3.1.0' },
    },
    null,
    2,
  ),
  'migrations/20250101000000_todos.cjs': `exports.up = (knex) =>
  knex.schema.createTable('todos', (t) => {
    t.increments('id');
    t.text('title').notNullable();
  });
exports.down = (knex) => knex.schema.dropTable('todos');
`,
  'seeds/todos.cjs': `exports.seed = async (knex) => {
  await knex('todos').del();
  await knex('todos').insert([{ title: 'write the migration' }, { title: 'seed it' }]);
};
`,
  'server.js': `import express from 'express';
import knexFactory from 'knex';

const knex = knexFactory({ client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } });
await knex.migrate.latest({ directory: './migrations' });
await knex.seed.run({ directory: './seeds' });

const app = express();
app.get('/', async (_req, res) => {
  const rows = await knex('todos').select('title').orderBy('id');
  res.send('<ul data-testid="todos">' + rows.map((r) => '<li>' + r.title + '</li>').join('') + '</ul>');
});
const code = (q) => knex.raw(q).then(() => 'ok', (e) => e.code ?? String(e));
app.get('/probe', async (_req, res) => {
  const prisma = new URL(process.env.PRISMA_DATABASE_URL);
  const plain = new URL(process.env.DATABASE_URL);
  res.json({
    currentSchema: (await knex.raw('SELECT current_schema() AS s')).rows[0].s,
    searchPath: (await knex.raw('SHOW search_path')).rows[0].search_path,
    migrationsTable: (await knex.raw("SELECT table_schema FROM information_schema.tables WHERE table_name = 'knex_migrations'")).rows[0]?.table_schema ?? null,
    prismaSchema: prisma.searchParams.get('schema'),
    prismaSameHost: prisma.host === plain.host,
    readPublic: await code('SELECT * FROM public.preview_sessions LIMIT 1'),
    writePublic: await code("INSERT INTO public.preview_sessions (user_id, template) VALUES (gen_random_uuid(), 'x')"),
    createInPublic: await code('CREATE TABLE public.evil (id int)'),
  });
});
app.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '0.0.0.0');
`,
};
