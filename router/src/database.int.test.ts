import { createBrowserTier } from '@preview/tiers';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFixture } from '../test/fixtures.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';

type LocalTier = ReturnType<typeof createLocalServerTier>;

describe('full-stack previews get an isolated database (real db-isolation)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({
      databases: true,
      tiers: () => ({ browser: createBrowserTier(), docker: createLocalServerTier({ autoReady: true }) }),
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("tells every registering agent where previews' DATABASE_URLs point", async () => {
    const reg = await h.router.nodes.register({
      joinToken: h.joinToken,
      name: `db-node-${Date.now()}`,
      url: 'http://127.0.0.1:1',
      capacity: { slots: 0, used: 0, warm: {} },
      runtime: 'docker',
    });
    const db = new URL(h.db.url);
    expect(reg.database).toEqual({ host: db.hostname, port: Number(db.port || 5432) });
  });

  it('creates the schema before the tier, passes DATABASE_URL, exports for the owner only, drops on delete', async () => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({
        files: loadFixture('express-pg'),
        client: { webcontainer: true, bundler: true },
      }),
    });
    expect(res.status).toBe(201);
    const p = (await res.json()) as {
      id: string;
      tier: string;
      classification: { needsDatabase: boolean };
      reasons: Array<{ reason: string }>;
    };
    expect(p.tier, JSON.stringify(p)).toBe('docker');
    expect(p.classification.needsDatabase).toBe(true);
    expect(p.reasons[0]?.reason).toBe('needs a database');
    expect(p.reasons.at(-1)?.reason).toMatch(/^full-stack app with a database runs on the docker tier/);

    const url = (h.router.previews.tiers.docker as LocalTier).files(p.id)?.get('__env/DATABASE_URL');
    expect(url).toMatch(/^postgres(ql)?:\/\//);
    // Prisma's form names the schema (Prisma ignores the role's search_path).
    const prisma = (h.router.previews.tiers.docker as LocalTier)
      .files(p.id)
      ?.get('__env/PRISMA_DATABASE_URL');
    expect(new URL(prisma!).searchParams.get('schema')).toBe(`preview_${p.id.replaceAll('-', '')}`);
    const app = new pg.Client({ connectionString: url });
    await app.connect();
    try {
      await app.query('CREATE TABLE todos (id serial PRIMARY KEY, title text NOT NULL)');
      await app.query(`INSERT INTO todos (title) VALUES ('ship the router')`);
    } finally {
      await app.end();
    }

    const other = await h.router.app.request(`/v1/previews/${p.id}/database/export`, {
      method: 'POST',
      headers: bearer(h.bob.jwt),
    });
    expect(other.status).toBe(404);
    const exp = await h.router.app.request(`/v1/previews/${p.id}/database/export`, {
      method: 'POST',
      headers: bearer(h.alice.jwt),
    });
    expect(exp.status).toBe(200);
    expect(exp.headers.get('content-type')).toContain('application/sql');
    const sql = await exp.text();
    expect(sql).toContain('todos');
    expect(sql).toContain('ship the router');

    const del = await h.router.app.request(`/v1/previews/${p.id}`, {
      method: 'DELETE',
      headers: bearer(h.alice.jwt),
    });
    expect(del.status).toBe(204);
    const { rows } = await h.db.pool.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1`, [
      `preview_${p.id.replaceAll('-', '')}`,
    ]);
    expect(rows[0].n).toBe(0);
  });
});
