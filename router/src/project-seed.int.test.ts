import { createDockerTier } from '@preview/tiers/docker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DockerNode, startDockerNode } from '../test/docker-node.ts';
import { loadFixture } from '../test/fixtures.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';

/**
 * Issue 16, "runs a SQL file or the project's seed script in the preview": `POST
 * /v1/projects/:projectId/database/seed` without SQL (or with `script: true`) runs the project's own
 * seed: its `supabase/seed.sql` / `seed.sql` from the stored files, else package.json `scripts.seed`
 * inside the project's running preview (a real pool agent on the Docker engine) with the preview's
 * DATABASE_URL. Real Postgres, real db-isolation.
 */
type ErrorJson = { error: { code: string; message: string } };

/** The express-pg fixture with `extra` files and package.json `scripts` merged in. */
function project(extra: Record<string, string>, scripts: Record<string, string> = {}) {
  const files = { ...loadFixture('express-pg') } as Record<string, string>;
  const pkg = JSON.parse(files['package.json']!) as { scripts: Record<string, string> };
  pkg.scripts = { ...pkg.scripts, ...scripts };
  return { ...files, 'package.json': JSON.stringify(pkg, null, 2), ...extra };
}

function api(h: Harness) {
  const post = (path: string, body: unknown) =>
    h.router.app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify(body),
    });
  const open = async (projectId: string, files: Record<string, string>) => {
    const res = await post('/v1/previews', { files, serverOnly: true, projectId });
    const view = (await res.json()) as { id: string; tier: string };
    expect(res.status, JSON.stringify(view)).toBe(201);
    return view;
  };
  const seed = (projectId: string, body: object) => post(`/v1/projects/${projectId}/database/seed`, body);
  /** The project's schema (`preview_<database_id hex>`). */
  const schemaOf = async (projectId: string) => {
    const { rows: p } = await h.db.pool.query<{ database_id: string }>(
      'SELECT database_id::text FROM preview_projects WHERE user_id = $1 AND project_id = $2',
      [h.alice.id, projectId],
    );
    return `preview_${p[0]!.database_id.replaceAll('-', '')}`;
  };
  /** `SELECT count(*)` of `table` in the project's schema, as the admin. */
  const rows = async (projectId: string, table: string) =>
    (
      await h.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${await schemaOf(projectId)}.${table}`,
      )
    ).rows[0]!.n;
  return { open, seed, rows, schemaOf };
}

describe('project seed without SQL: seed files, refusals', () => {
  let h: Harness;
  let a: ReturnType<typeof api>;
  beforeAll(async () => {
    h = await createHarness({
      databases: true,
      tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }),
    });
    a = api(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('runs the project’s supabase/seed.sql (before seed.sql) when no SQL is sent, as the preview’s role', async () => {
    await a.open('files-app', {
      ...project({
        'supabase/seed.sql':
          "CREATE TABLE IF NOT EXISTS fruit (name text); INSERT INTO fruit VALUES (current_user), ('pear');",
        'seed.sql': 'CREATE TABLE other (x int);',
      }),
    });
    const res = await a.seed('files-app', {});
    const body = (await res.json()) as { source: string; ms: number };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.source).toBe('supabase/seed.sql');
    expect(await a.rows('files-app', 'fruit')).toBe(2);
    // `script: true` is the same request.
    const again = await a.seed('files-app', { script: true });
    expect(again.status, await again.clone().text()).toBe(200);
    expect(await a.rows('files-app', 'fruit')).toBe(4);
  });

  it('refuses sql with script: true naming the field; a project without any seed is 404 no_seed', async () => {
    const both = await a.seed('files-app', { sql: 'SELECT 1', script: true });
    expect(both.status).toBe(400);
    expect(JSON.stringify(await both.json())).toContain('script');
    await a.open('bare-app', project({}));
    const none = await a.seed('bare-app', {});
    const err = (await none.json()) as ErrorJson;
    expect(none.status, JSON.stringify(err)).toBe(404);
    expect(err.error.code).toBe('no_seed');
    expect(err.error.message).toContain('scripts.seed');
  });

  it('a scripts.seed with no sandbox to run in is a 409 naming why; nothing runs', async () => {
    await a.open('scripted-local', project({ 'seed.js': 'process.exit(0)' }, { seed: 'node seed.js' }));
    const res = await a.seed('scripted-local', {});
    const err = (await res.json()) as ErrorJson;
    expect(res.status, JSON.stringify(err)).toBe(409);
    expect(err.error.code).toBe('no_sandbox');
  });
});

describe('project seed script in a real preview (pool agent on Docker)', () => {
  let h: Harness;
  let node: DockerNode;
  let a: ReturnType<typeof api>;
  beforeAll(async () => {
    h = await createHarness({
      databases: true,
      tiers: ({ nodeDirectory }) => ({ docker: createDockerTier(nodeDirectory) }),
    });
    node = await startDockerNode(h, { name: 'seed', slots: 3, warmPool: 'express-pg=1' });
    a = api(h);
  }, 600_000);
  afterAll(async () => {
    await node?.close();
    await h?.close();
  }, 120_000);

  it('runs package.json scripts.seed in the sandbox with the preview’s DATABASE_URL; a failing one is 400 seed_failed with its output', {
    timeout: 600_000,
  }, async () => {
    const seedJs = `import pg from 'pg';
const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
await c.connect();
await c.query('CREATE TABLE IF NOT EXISTS items (name text, by text DEFAULT current_user)');
await c.query("INSERT INTO items (name) VALUES ('a'), ('b'), ('c')");
const { rows } = await c.query('SELECT count(*)::int AS n FROM items');
console.log('seeded ' + rows[0].n);
await c.end();
`;
    const view = await a.open(
      'scripted',
      project(
        { 'seed.js': seedJs, 'fail.js': 'console.error("no luck"); process.exit(3);' },
        { seed: 'node seed.js' },
      ),
    );
    expect(view.tier).toBe('docker');
    await h.router.previews.waitReady(view.id, 240_000);

    const res = await a.seed('scripted', {});
    const body = (await res.json()) as { source: string; output: string; ms: number };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.source).toBe('package.json scripts.seed');
    expect(body.output).toContain('seeded 3');
    expect(await a.rows('scripted', 'items')).toBe(3);
    // It ran as the preview's role (its DATABASE_URL): the rows say who wrote them.
    const by = await h.db.pool.query<{ by: string }>(
      `SELECT DISTINCT by FROM ${await a.schemaOf('scripted')}.items`,
    );
    expect(by.rows.map((r) => r.by)).toEqual([expect.stringMatching(/^p_[0-9a-f]{32}$/)]);

    // The seed script changes (an edit) to one that fails: 400 seed_failed (as failing SQL) with its exit and output.
    const pkg = JSON.parse(project({}, { seed: 'node fail.js' })['package.json']!);
    const put = await h.router.app.request(`/v1/previews/${view.id}/files`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'package.json', content: JSON.stringify(pkg, null, 2), encoding: 'utf8' }],
      }),
    });
    expect(put.status, await put.clone().text()).toBe(200);
    const failed = await a.seed('scripted', {});
    const err = (await failed.json()) as ErrorJson;
    expect(failed.status, JSON.stringify(err)).toBe(400);
    expect(err.error.code).toBe('seed_failed');
    expect(err.error.message).toContain('exited with 3');
    expect(err.error.message).toContain('no luck');
    expect(await a.rows('scripted', 'items')).toBe(3);
  });
});
