import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createDbIsolation } from '@preview/db-isolation';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFixture } from '../test/fixtures.ts';
import { bearer, createHarness, type Harness, silent, VITE_FILES } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';
import { connectRawEditor } from '../test/sync/index.ts';
import { retentionJob } from './jobs/jobs.ts';

/**
 * Issue 16, part 1: a preview per app. `projectId` on create gives one live preview per (user,
 * project) (also under concurrent opens, across replicas); a suspended one is woken by an open, an
 * edit or a sync connect; after it ended, the next open starts a new preview from the project's
 * stored files on the project's database (its rows still there); retention purges projects idle past
 * the limit and keeps used ones. Real Postgres, real db-isolation, the in-process server tier.
 */
type LocalTier = ReturnType<typeof createLocalServerTier>;
type View = { id: string; state: string; projectId: string | null; tier: string };

const until = async (what: string, check: () => Promise<boolean>, ms = 15_000) => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

function api(h: Harness) {
  const call = (path: string, init: { method?: string; body?: unknown; jwt?: string } = {}) =>
    h.router.app.request(path, {
      method: init.method ?? 'GET',
      headers: { 'content-type': 'application/json', ...bearer(init.jwt ?? h.alice.jwt) },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
  const open = async (projectId: string, o: { files?: object; jwt?: string } = {}) => {
    const res = await call('/v1/previews', {
      method: 'POST',
      body: { files: o.files ?? VITE_FILES, serverOnly: true, projectId },
      ...(o.jwt ? { jwt: o.jwt } : {}),
    });
    return { status: res.status, body: (await res.json()) as View };
  };
  const state = async (id: string) => (await h.router.store.get(id))?.state;
  return { call, open, state };
}

describe('project identity (projectId), wake on edit', () => {
  let h: Harness;
  let tier: LocalTier;
  let server: Server;
  let port: number;
  let a: ReturnType<typeof api>;
  beforeAll(async () => {
    h = await createHarness({
      databases: true,
      tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }),
    });
    tier = h.router.tiers.docker as LocalTier;
    a = api(h);
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
  });

  it('refuses a bad projectId naming the field and the rule, and writes nothing', async () => {
    const before = await h.db.pool.query('SELECT count(*)::int AS n FROM preview_sessions');
    for (const bad of ['', 'has space', '../up', '-lead', 'x'.repeat(129), 'ünï']) {
      const res = await a.call('/v1/previews', {
        method: 'POST',
        body: { files: VITE_FILES, serverOnly: true, projectId: bad },
      });
      expect(res.status, bad).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.message).toMatch(/^body\.projectId: .*\(rule project_id\)$/);
    }
    const wrongType = await a.call('/v1/previews', {
      method: 'POST',
      body: { files: VITE_FILES, projectId: 42 },
    });
    expect(wrongType.status).toBe(400);
    expect(((await wrongType.json()) as { error: { message: string } }).error.message).toMatch(
      /body\.projectId/,
    );
    const get = await a.call('/v1/projects/bad%20id/preview');
    expect(get.status).toBe(400);
    expect(((await get.json()) as { error: { message: string } }).error.message).toMatch(
      /^param\.projectId: .*\(rule project_id\)$/,
    );
    const after = await h.db.pool.query('SELECT count(*)::int AS n FROM preview_sessions');
    expect(after.rows[0].n).toBe(before.rows[0].n);
    const projects = await h.db.pool.query('SELECT count(*)::int AS n FROM preview_projects');
    expect(projects.rows[0].n).toBe(0);
  });

  it('opening the same project twice gives one preview (201, then 200); GET finds it; it is the owner’s only', async () => {
    const first = await a.open('app-one');
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.body.projectId).toBe('app-one');
    const again = await a.open('app-one');
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    const got = await a.call('/v1/projects/app-one/preview');
    expect(got.status).toBe(200);
    expect(((await got.json()) as View).id).toBe(first.body.id);

    // Another user's project of the same name is theirs: a 404 for the GET, a preview of their own.
    const other = await a.call('/v1/projects/app-one/preview', { jwt: h.bob.jwt });
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('not_found');
    const bobs = await a.open('app-one', { jwt: h.bob.jwt });
    expect(bobs.status).toBe(201);
    expect(bobs.body.id).not.toBe(first.body.id);
    expect((await a.call('/v1/projects/never-opened/preview')).status).toBe(404);
    // Without credentials: 401.
    expect((await h.router.app.request('/v1/projects/app-one/preview')).status).toBe(401);
  });

  it('concurrent opens of one project, on two replicas, make one preview', async () => {
    const replica = await h.replica();
    const body = JSON.stringify({ files: VITE_FILES, serverOnly: true, projectId: 'app-race' });
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? replica.app : h.router.app).request('/v1/previews', {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
          body,
        }),
      ),
    );
    const views = await Promise.all(
      results.map(async (r) => ({ status: r.status, ...((await r.json()) as View) })),
    );
    expect(new Set(views.map((v) => v.id)).size).toBe(1);
    expect(views.filter((v) => v.status === 201)).toHaveLength(1);
    expect(views.filter((v) => v.status === 200)).toHaveLength(9);
    const rows = await h.db.pool.query(
      'SELECT count(*)::int AS n FROM preview_sessions WHERE user_id = $1 AND project_id = $2',
      [h.alice.id, 'app-race'],
    );
    expect(rows.rows[0].n).toBe(1);
    expect(tier.creates).toBeGreaterThan(0);
  });

  it('opening a suspended project wakes it', async () => {
    const { body: p } = await a.open('app-sleepy');
    await until('ready', async () => (await a.state(p.id)) === 'ready');
    expect((await a.call(`/v1/previews/${p.id}/suspend`, { method: 'POST' })).status).toBe(200);
    expect(tier.suspended(p.id)).toBe(true);
    const again = await a.open('app-sleepy');
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(p.id);
    expect(['starting', 'ready']).toContain(again.body.state);
    expect(tier.suspended(p.id)).toBe(false);
  });

  it('an edit over HTTP wakes a suspended preview; it is applied and acked as usual', async () => {
    const { body: p } = await a.open('app-http-edit');
    await until('ready', async () => (await a.state(p.id)) === 'ready');
    await a.call(`/v1/previews/${p.id}/suspend`, { method: 'POST' });
    expect(await a.state(p.id)).toBe('suspended');
    const res = await a.call(`/v1/previews/${p.id}/files`, {
      method: 'PUT',
      body: { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'main.js', content: 'console.log("woke")' }] },
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toEqual({
      applied: { type: 'ack', seq: 1, stage: 'applied' },
      persisted: { type: 'ack', seq: 1, stage: 'persisted' },
    });
    expect(tier.files(p.id)?.get('main.js')).toBe('console.log("woke")');
    expect((await h.router.store.loadFiles(p.id))['main.js']).toBe('console.log("woke")');
    await until('ready again', async () => (await a.state(p.id)) === 'ready');
  });

  it('a sync connect wakes a suspended preview, and so does an edit from an editor connected before', async () => {
    const { body: p } = await a.open('app-socket');
    await until('ready', async () => (await a.state(p.id)) === 'ready');
    const url = `ws://127.0.0.1:${port}/v1/previews/${p.id}/sync?access_token=${h.alice.jwt}`;
    const ed = await connectRawEditor(url, { clientId: 'editor-1' });
    try {
      ed.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'one' }] });
      await ed.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 1));
      await a.call(`/v1/previews/${p.id}/suspend`, { method: 'POST' });
      expect(tier.suspended(p.id)).toBe(true);
      // The sandbox is paused: this batch is applied only once something wakes it; the edit does.
      ed.send({ type: 'batch', seq: 2, ops: [{ op: 'put', path: 'a.txt', content: 'two' }] });
      await ed.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'applied' && f.seq === 2));
      await ed.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 2));
      expect(tier.files(p.id)?.get('a.txt')).toBe('two');
      expect((await h.router.store.loadFiles(p.id))['a.txt']).toBe('two');
      await until('ready again', async () => (await a.state(p.id)) === 'ready');
    } finally {
      ed.close();
    }

    await a.call(`/v1/previews/${p.id}/suspend`, { method: 'POST' });
    expect(await a.state(p.id)).toBe('suspended');
    const idle = await connectRawEditor(url, { clientId: 'editor-2' });
    try {
      // Woken: starting, then ready once the tier reports the sandbox back.
      await until('woken by the connect', async () => (await a.state(p.id)) === 'ready');
      expect(tier.suspended(p.id)).toBe(false);
    } finally {
      idle.close();
    }
  });

  it('after a project’s preview ended, the next open makes a new one from its stored files, on its database', async () => {
    const first = await a.open('app-data', { files: loadFixture('express-pg') });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const p1 = first.body.id;
    const project = (
      await h.db.pool.query(
        'SELECT database_id FROM preview_projects WHERE user_id = $1 AND project_id = $2',
        [h.alice.id, 'app-data'],
      )
    ).rows[0] as { database_id: string };
    const schema = `preview_${project.database_id.replaceAll('-', '')}`;
    const url1 = tier.files(p1)?.get('__env/DATABASE_URL');
    expect(url1).toMatch(/^postgres/);
    const db1 = new pg.Client({ connectionString: url1 });
    await db1.connect();
    try {
      await db1.query('CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)');
      await db1.query(`INSERT INTO notes (body) VALUES ('first'), ('second')`);
    } finally {
      await db1.end();
    }
    const edit = await a.call(`/v1/previews/${p1}/files`, {
      method: 'PUT',
      body: { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'NOTES.md', content: 'edited in p1' }] },
    });
    expect(edit.status).toBe(200);

    expect((await a.call(`/v1/previews/${p1}`, { method: 'DELETE' })).status).toBe(204);
    expect(await a.state(p1)).toBe('ended');
    // The schema is the project's: still there after its preview ended.
    const kept = await h.db.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    expect(kept.rowCount).toBe(1);
    expect((await a.call('/v1/projects/app-data/preview')).status).toBe(404);

    // The editor sends what it has (here: nothing new); the project's stored files win.
    const second = await a.open('app-data', { files: { 'index.js': 'stale editor copy' } });
    expect(second.status, JSON.stringify(second.body)).toBe(201);
    const p2 = second.body.id;
    expect(p2).not.toBe(p1);
    expect(tier.files(p2)?.get('NOTES.md')).toBe('edited in p1');
    expect(tier.files(p2)?.get('index.js')).not.toBe('stale editor copy');
    expect(await h.router.store.loadFiles(p2)).toEqual(await h.router.store.loadFiles(p1));
    expect((await h.router.store.loadFiles(p2))['NOTES.md']).toBe('edited in p1');
    const url2 = tier.files(p2)?.get('__env/DATABASE_URL');
    expect(url2).toMatch(/^postgres/);
    const db2 = new pg.Client({ connectionString: url2 });
    await db2.connect();
    try {
      const rows = await db2.query('SELECT body FROM notes ORDER BY id');
      expect(rows.rows.map((r) => r.body)).toEqual(['first', 'second']);
    } finally {
      await db2.end();
    }
    // The export reads the project's schema too.
    const exp = await a.call(`/v1/previews/${p2}/database/export`, { method: 'POST' });
    expect(exp.status).toBe(200);
    expect(await exp.text()).toContain('second');
  });
});

describe('retention (RETENTION_MS)', () => {
  const RETENTION_MS = 800;
  let h: Harness;
  let a: ReturnType<typeof api>;
  beforeAll(async () => {
    h = await createHarness({
      databases: true,
      env: { RETENTION_MS: String(RETENTION_MS) },
      tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }),
    });
    a = api(h);
  });
  afterAll(async () => {
    await h?.close();
  });

  const projectRow = async (projectId: string) =>
    (
      await h.db.pool.query<{ database_id: string }>(
        'SELECT database_id FROM preview_projects WHERE user_id = $1 AND project_id = $2',
        [h.alice.id, projectId],
      )
    ).rows[0];
  const countFor = async (table: string, ids: string[]) =>
    (
      await h.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${table} WHERE ${table === 'preview_sessions' ? 'id' : 'preview_id'} = ANY($1::uuid[])`,
        [ids],
      )
    ).rows[0]!.n;
  const idleIds = async () =>
    (await h.router.projects.idle(new Date(Date.now() - RETENTION_MS))).map((p) => p.projectId);

  it('purges a project idle past the limit (rows, files, events, schema) and keeps one used since', async () => {
    const idle = await a.open('idle-app', { files: loadFixture('express-pg') });
    const used = await a.open('used-app', { files: loadFixture('express-pg') });
    expect(idle.status).toBe(201);
    expect(used.status).toBe(201);
    const idleDb = (await projectRow('idle-app'))!.database_id;
    const usedDb = (await projectRow('used-app'))!.database_id;
    for (const p of [idle.body, used.body]) await a.call(`/v1/previews/${p.id}`, { method: 'DELETE' });
    expect(await countFor('project_files', [idle.body.id])).toBeGreaterThan(0);
    expect(await countFor('preview_events', [idle.body.id])).toBeGreaterThan(0);

    await until('both idle past the limit', async () => {
      const ids = await idleIds();
      return ids.includes('idle-app') && ids.includes('used-app');
    });
    // A use: the project is opened again (a new preview from its stored files).
    const reopened = await a.open('used-app');
    expect(reopened.status).toBe(201);

    const purgedBefore = (await h.router.metrics.retentionPurges.get()).values.find(
      (v) => v.labels.outcome === 'purged',
    )?.value;
    const run = (await h.router.scheduler.runNow('retention')) as { purged: number };
    expect(run.purged).toBe(1);
    const purgedAfter = (await h.router.metrics.retentionPurges.get()).values.find(
      (v) => v.labels.outcome === 'purged',
    )?.value;
    expect(purgedAfter).toBe((purgedBefore ?? 0) + 1);

    expect(await projectRow('idle-app')).toBeUndefined();
    expect(await countFor('preview_sessions', [idle.body.id])).toBe(0);
    expect(await countFor('project_files', [idle.body.id])).toBe(0);
    expect(await countFor('preview_events', [idle.body.id])).toBe(0);
    const schemas = async (id: string) =>
      (
        await h.db.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
          `preview_${id.replaceAll('-', '')}`,
        ])
      ).rowCount;
    expect(await schemas(idleDb)).toBe(0);

    expect(await projectRow('used-app')).toBeDefined();
    expect(await countFor('preview_sessions', [used.body.id, reopened.body.id])).toBe(2);
    expect(await countFor('project_files', [used.body.id])).toBeGreaterThan(0);
    expect(await schemas(usedDb)).toBe(1);

    // Idempotent: a second run (any replica) finds nothing more of these to purge.
    const second = (await h.router.scheduler.runNow('retention')) as { purged: number };
    expect(second.purged).toBe(0);
  });

  it('purges ended previews created without a projectId (rows, files, events, schema) after the limit; keeps live ones and ones used since', async () => {
    const create = async (files: object) => {
      const res = await a.call('/v1/previews', { method: 'POST', body: { files, serverOnly: true } });
      expect(res.status).toBe(201);
      return ((await res.json()) as View).id;
    };
    const idle = await create(loadFixture('express-pg'));
    const used = await create(VITE_FILES);
    const live = await create(VITE_FILES);
    for (const id of [idle, used]) await a.call(`/v1/previews/${id}`, { method: 'DELETE' });
    expect(await a.state(idle)).toBe('ended');
    expect(await countFor('project_files', [idle])).toBeGreaterThan(0);
    expect(await countFor('preview_events', [idle])).toBeGreaterThan(0);
    // The schema drop at the end did not happen (a crash between the two): the preview's schema is
    // still there, and retention drops it with the rows.
    const isolation = createDbIsolation({ admin: h.db.pool, previewDatabaseUrl: h.db.url });
    await isolation.create(idle);
    const schema = `preview_${idle.replaceAll('-', '')}`;
    const schemaCount = async () =>
      (await h.db.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount;
    expect(await schemaCount()).toBe(1);

    const idleEnded = async () =>
      (await h.router.projects.idleEndedPreviews(new Date(Date.now() - RETENTION_MS))).map(
        (p) => p.previewId,
      );
    await until('both ended past the limit', async () => {
      const ids = await idleEnded();
      return ids.includes(idle) && ids.includes(used);
    });
    expect(await idleEnded()).not.toContain(live);
    // Used since it ended: its page was viewed.
    await h.router.store.touch(used, 'view');

    const metric = async () =>
      (await h.router.metrics.retentionPurges.get()).values.find((v) => v.labels.outcome === 'purged')
        ?.value ?? 0;
    const before = await metric();
    const run = (await h.router.scheduler.runNow('retention')) as { purged: number };
    expect(run.purged).toBe(1);
    expect(await metric()).toBe(before + 1);
    expect(await countFor('preview_sessions', [idle])).toBe(0);
    expect(await countFor('project_files', [idle])).toBe(0);
    expect(await countFor('preview_events', [idle])).toBe(0);
    expect(await schemaCount()).toBe(0);
    expect(await countFor('preview_sessions', [used, live])).toBe(2);
    expect(await countFor('project_files', [used])).toBeGreaterThan(0);
    expect(await a.state(live)).not.toBe('ended');

    // Idempotent: the next run finds nothing of these (the used one is not idle yet), and a purge of
    // a preview already gone is `absent`; a live one is never purged, whatever the cutoff.
    const second = (await h.router.scheduler.runNow('retention')) as { purged: number };
    expect(second.purged).toBe(0);
    const far = new Date(Date.now() + 60_000);
    expect(await h.router.projects.purgeEndedPreview(idle, far)).toEqual({ outcome: 'absent' });
    expect(await h.router.projects.purgeEndedPreview(live, far)).toEqual({ outcome: 'live' });
    // A preview used after the listing is kept by the purge's own re-check.
    await until('the used one idle again', async () => (await idleEnded()).includes(used));
    await h.router.store.touch(used, 'edit');
    expect(
      await h.router.projects.purgeEndedPreview(used, new Date(Date.now() - RETENTION_MS)),
    ).toMatchObject({ outcome: 'used' });
    expect(await countFor('preview_sessions', [used])).toBe(1);
    await a.call(`/v1/previews/${live}`, { method: 'DELETE' });
  });

  it('re-checks the last use in the purge’s own transaction: a project used after the listing is kept', async () => {
    const p = await a.open('raced-app');
    await a.call(`/v1/previews/${p.body.id}`, { method: 'DELETE' });
    await until('idle past the limit', async () => (await idleIds()).includes('raced-app'));
    const listed = (await h.router.projects.idle(new Date(Date.now() - RETENTION_MS))).find(
      (x) => x.projectId === 'raced-app',
    )!;
    // Used after the listing: a page view moves the preview's last_view_at.
    await h.router.store.touch(p.body.id, 'view');
    const before = new Date(Date.now() - RETENTION_MS);
    expect(await h.router.projects.purge(listed, before)).toMatchObject({ outcome: 'used' });
    expect(await projectRow('raced-app')).toBeDefined();
    expect(await countFor('preview_sessions', [p.body.id])).toBe(1);

    // A project with a live preview is never purged, whatever its dates.
    const live = await a.open('live-app');
    const far = new Date(Date.now() + 60_000);
    expect(await h.router.projects.purge({ userId: h.alice.id, projectId: 'live-app' }, far)).toEqual({
      outcome: 'live',
    });
    expect(await a.state(live.body.id)).not.toBe('ended');

    // And an unknown (already purged) one is `absent`; the job counts what it decided.
    expect(await h.router.projects.purge({ userId: h.alice.id, projectId: 'gone-app' }, far)).toEqual({
      outcome: 'absent',
    });
    const r = await retentionJob(
      {
        previews: h.router.previews,
        nodes: h.router.nodes,
        log: silent,
        metrics: h.router.metrics,
        idleSuspendMs: 60_000,
        idleDestroyMs: 60_000,
        projects: h.router.projects,
        retentionMs: RETENTION_MS,
      },
      Date.now() + 60_000,
    );
    // Far in the future, raced-app is idle and purged; live-app stays (live).
    expect(r.purged).toBeGreaterThanOrEqual(1);
    expect(await projectRow('raced-app')).toBeUndefined();
    expect(await projectRow('live-app')).toBeDefined();
  });
});
