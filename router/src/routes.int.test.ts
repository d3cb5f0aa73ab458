import { createBrowserTier } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness, VITE_FILES } from '../test/harness.ts';
import { createDownTier, createLocalServerTier, withSlowCreate } from '../test/local-tier.ts';

type Who = 'owner' | 'other' | 'anonymous' | 'node' | 'serviceKey';
const WHO: Who[] = ['owner', 'other', 'anonymous', 'node', 'serviceKey'];

describe('routes (app.request, real Postgres)', () => {
  let h: Harness;
  const headersFor = (who: Who): Record<string, string> =>
    who === 'owner'
      ? bearer(h.alice.jwt)
      : who === 'other'
        ? bearer(h.bob.jwt)
        : who === 'node'
          ? bearer(h.nodeCredential)
          : who === 'serviceKey'
            ? bearer(h.alice.apiKey)
            : {};
  const req = (path: string, init: RequestInit & { who?: Who } = {}) =>
    h.router.app.request(path, {
      ...init,
      headers: {
        'content-type': 'application/json',
        ...headersFor(init.who ?? 'owner'),
        ...(init.headers as Record<string, string>),
      },
    });
  const createPreview = async (
    who: Who = 'owner',
    body: object = { files: VITE_FILES, client: { webcontainer: true } },
  ) => {
    const res = await req('/v1/previews', { method: 'POST', body: JSON.stringify(body), who });
    expect(res.status).toBe(201);
    return (await res.json()) as {
      id: string;
      state: string;
      tier: string;
      reasons: unknown[];
      previewUrl: string | null;
    };
  };

  beforeAll(async () => {
    h = await createHarness({
      env: { MAX_LIVE_PREVIEWS_PER_USER: '10000' },
      tiers: () => ({ browser: createBrowserTier(), docker: createLocalServerTier({ autoReady: true }) }),
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  describe('authorization matrix over every route', () => {
    // expected status per principal; another user's preview is a 404, never a 403.
    const perPreview: Array<{
      name: string;
      method: string;
      path: (id: string) => string;
      body?: object;
      ok: number;
      okOther?: number;
    }> = [
      { name: 'get', method: 'GET', path: (id) => `/v1/previews/${id}`, ok: 200 },
      { name: 'delete', method: 'DELETE', path: (id) => `/v1/previews/${id}`, ok: 204 },
      { name: 'suspend', method: 'POST', path: (id) => `/v1/previews/${id}/suspend`, ok: 200 },
      { name: 'resume', method: 'POST', path: (id) => `/v1/previews/${id}/resume`, ok: 200 },
      {
        name: 'files',
        method: 'PUT',
        path: (id) => `/v1/previews/${id}/files`,
        body: { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'main.js', content: 'console.log(2)' }] },
        ok: 200,
      },
      { name: 'stored files', method: 'GET', path: (id) => `/v1/previews/${id}/files`, ok: 200 },
      { name: 'events (SSE)', method: 'GET', path: (id) => `/v1/previews/${id}/events`, ok: 200 },
      // The owner reaches the export; this preview has no database, which only the owner learns.
      {
        name: 'database export',
        method: 'POST',
        path: (id) => `/v1/previews/${id}/database/export`,
        ok: 404,
      },
    ];
    const expected = (who: Who, ok: number) =>
      who === 'owner' || who === 'serviceKey' ? ok : who === 'other' ? 404 : who === 'anonymous' ? 401 : 403;

    for (const route of perPreview)
      for (const who of WHO)
        it(`${route.name} as ${who}`, async () => {
          const p = await createPreview('owner');
          const res = await req(route.path(p.id), {
            method: route.method,
            who,
            ...(route.body ? { body: JSON.stringify(route.body) } : {}),
          });
          expect(res.status).toBe(expected(who, route.ok));
          if (res.headers.get('content-type')?.includes('text/event-stream')) await res.body?.cancel();
          else if (res.status !== 204) {
            const body = (await res.json()) as { error?: { code: string } };
            if (who === 'other') expect(body.error?.code).toBe('not_found');
            if (route.name === 'database export' && who === 'owner')
              expect(body.error?.code).toBe('no_database');
          }
          // Nobody but the owner changed anything.
          const after = await h.router.store.get(p.id);
          if (who !== 'owner' && who !== 'serviceKey') expect(after?.state).toBe('ready');
        });

    for (const who of WHO) {
      it(`create as ${who}`, async () => {
        const res = await req('/v1/previews', {
          method: 'POST',
          who,
          body: JSON.stringify({ files: VITE_FILES, client: { webcontainer: true } }),
        });
        expect(res.status).toBe(who === 'anonymous' ? 401 : who === 'node' ? 403 : 201);
        if (res.status === 201) expect(((await res.json()) as { tier: string }).tier).toBe('browser');
      });
      it(`templates as ${who}`, async () => {
        const res = await req('/v1/templates', { who });
        expect(res.status).toBe(who === 'anonymous' ? 401 : who === 'node' ? 403 : 200);
      });
      it(`list as ${who}`, async () => {
        const mine = await createPreview('owner');
        const res = await req('/v1/previews?limit=200', { who });
        expect(res.status).toBe(who === 'anonymous' ? 401 : who === 'node' ? 403 : 200);
        if (res.status === 200) {
          const ids = ((await res.json()) as { previews: Array<{ id: string }> }).previews.map((p) => p.id);
          expect(ids.includes(mine.id)).toBe(who !== 'other');
        }
      });
      it(`heartbeat as ${who}`, async () => {
        const res = await req('/v1/nodes/heartbeat', {
          method: 'POST',
          who,
          body: JSON.stringify({
            capacity: { slots: 4, used: 1, warm: { 'vite-react': 1 } },
            sessions: [],
            at: Date.now(),
          }),
        });
        expect(res.status).toBe(who === 'node' ? 200 : who === 'anonymous' ? 401 : 403);
      });
      it(`node sessions as ${who}`, async () => {
        const res = await req('/v1/nodes/sessions', { who });
        expect(res.status).toBe(who === 'node' ? 200 : who === 'anonymous' ? 401 : 403);
        if (res.status === 200) expect(await res.json()).toEqual({ sessions: [] });
      });
      it(`register as ${who}: only the join token counts`, async () => {
        const body = (joinToken: string) =>
          JSON.stringify({
            joinToken,
            name: `n-${who}`,
            url: 'http://10.0.0.9:7070',
            capacity: { slots: 1, used: 0, warm: {} },
            runtime: 'docker',
          });
        expect(
          (await req('/v1/nodes/register', { method: 'POST', who, body: body('x'.repeat(32)) })).status,
        ).toBe(403);
        const ok = await req('/v1/nodes/register', { method: 'POST', who, body: body(h.joinToken) });
        expect(ok.status).toBe(201);
        const reg = (await ok.json()) as { nodeId: string; credential: string; heartbeatMs: number };
        expect(reg.credential).toMatch(/^pn_/);
        const stored = await h.db.pool.query('SELECT credential_hash FROM preview_nodes WHERE id = $1', [
          reg.nodeId,
        ]);
        expect(stored.rows[0].credential_hash).not.toContain(reg.credential); // stored hashed
        const hb = await h.router.app.request('/v1/nodes/heartbeat', {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...bearer(reg.credential) },
          body: JSON.stringify({ capacity: { slots: 1, used: 0, warm: {} }, sessions: [], at: Date.now() }),
        });
        expect(hb.status).toBe(200);
        expect(await h.router.nodes.liveness.isAlive(reg.nodeId)).toBe(true);
      });
    }

    it('the OpenAPI document lists every API route', async () => {
      const doc = (await (await h.router.app.request('/openapi.json')).json()) as {
        openapi: string;
        paths: Record<string, Record<string, unknown>>;
      };
      expect(doc.openapi).toBe('3.1.0');
      const ops = Object.entries(doc.paths).flatMap(([p, m]) =>
        Object.keys(m).map((k) => `${k.toUpperCase()} ${p}`),
      );
      expect(ops.sort()).toEqual(
        [
          'POST /v1/previews',
          'GET /v1/previews',
          'GET /v1/previews/{id}',
          'GET /v1/projects/{projectId}/preview',
          'DELETE /v1/previews/{id}',
          'POST /v1/previews/{id}/suspend',
          'POST /v1/previews/{id}/resume',
          'POST /v1/previews/{id}/realtime',
          'PUT /v1/previews/{id}/files',
          'GET /v1/previews/{id}/files',
          'GET /v1/templates',
          'POST /v1/previews/{id}/placement',
          'GET /v1/previews/{id}/importmap',
          'GET /v1/previews/{id}/events',
          'POST /v1/previews/{id}/database/export',
          'POST /v1/projects/{projectId}/database/deploy',
          'POST /v1/projects/{projectId}/database/seed',
          'POST /v1/nodes/register',
          'POST /v1/nodes/heartbeat',
          'GET /v1/nodes/sessions',
          'POST /v1/nodes/previews/{id}/failed',
        ].sort(),
      );
    });

    it('public routes need no credentials; bad credentials are 401 everywhere', async () => {
      for (const p of ['/healthz', '/readyz', '/openapi.json', '/docs', '/metrics', '/'])
        expect((await h.router.app.request(p)).status).toBe(200);
      const expired = await req('/v1/previews', {
        headers: bearer('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad'),
      });
      expect(expired.status).toBe(401);
      expect((await req('/v1/previews', { headers: bearer('pk_unknown') })).status).toBe(401);
      expect((await req('/v1/previews', { headers: bearer('pn_unknown') })).status).toBe(401);
      expect((await req('/v1/previews', { headers: { authorization: 'Basic abc' } })).status).toBe(401);
    });
  });

  describe('every bad body is a 400 naming the field and rule', () => {
    const bad: Array<[string, string, string, object | string, RegExp, Record<string, string>?]> = [
      ['create: no files', 'POST', '/v1/previews', {}, /body\.files/],
      [
        'create: absolute path',
        'POST',
        '/v1/previews',
        { files: { '/etc/passwd': 'x' } },
        /body\.files\.\/etc\/passwd: .*rule absolute/,
      ],
      [
        'create: dot-dot path',
        'POST',
        '/v1/previews',
        { files: { '../x.js': 'x' } },
        /body\.files\.\.\.\/x\.js:.*rule/,
      ],
      [
        'create: unknown template',
        'POST',
        '/v1/previews',
        { files: {}, template: 'rails' },
        /body\.template/,
      ],
      [
        'create: unknown field',
        'POST',
        '/v1/previews',
        { files: {}, tier: 'docker' },
        /unrecognized_keys|tier/,
      ],
      [
        'create: client type',
        'POST',
        '/v1/previews',
        { files: {}, client: { webcontainer: 'yes' } },
        /body\.client\.webcontainer/,
      ],
      ['create: not JSON', 'POST', '/v1/previews', '{oops', /body|JSON/],
      [
        'create: long idempotency key',
        'POST',
        '/v1/previews',
        { files: VITE_FILES },
        /header\.idempotency-key/,
        { 'idempotency-key': 'k'.repeat(201) },
      ],
      [
        'deploy: not a postgres URL',
        'POST',
        '/v1/projects/app1/database/deploy',
        { databaseUrl: 'mysql://h/db' },
        /body\.databaseUrl: must be a postgres:\/\/.*rule database_url/,
      ],
      [
        'deploy: bad schema',
        'POST',
        '/v1/projects/app1/database/deploy',
        { databaseUrl: 'postgres://h/db', schema: 'Robert"); DROP' },
        /body\.schema: must be a lowercase SQL identifier.*rule identifier/,
      ],
      [
        'deploy: replace not a boolean',
        'POST',
        '/v1/projects/app1/database/deploy',
        { databaseUrl: 'postgres://h/db', replace: 'yes' },
        /body\.replace/,
      ],
      [
        'deploy: bad project id',
        'POST',
        '/v1/projects/..%2Fx/database/deploy',
        { databaseUrl: 'postgres://h/db' },
        /param\.projectId.*rule project_id/,
      ],
      [
        'seed: empty sql',
        'POST',
        '/v1/projects/app1/database/seed',
        { sql: '' },
        /body\.sql: must not be empty/,
      ],
      [
        'seed: too large',
        'POST',
        '/v1/projects/app1/database/seed',
        { sql: `SELECT '${'x'.repeat(600 * 1024)}'` },
        /body\.sql: must be at most 524288 bytes.*rule seed_size/,
      ],
      ['list: limit 0', 'GET', '/v1/previews?limit=0', '', /query\.limit/],
      ['get: bad id', 'GET', '/v1/previews/not-a-uuid', '', /param\.id/],
      [
        'files: negative seq',
        'PUT',
        '/v1/previews/00000000-0000-4000-8000-000000000000/files',
        { type: 'batch', seq: -1, ops: [{ op: 'delete', path: 'a' }] },
        /body\.seq/,
      ],
      [
        'files: bad op',
        'PUT',
        '/v1/previews/00000000-0000-4000-8000-000000000000/files',
        { type: 'batch', seq: 1, ops: [{ op: 'chmod', path: 'a' }] },
        /body\.ops\.0\.op/,
      ],
      [
        'files: empty ops',
        'PUT',
        '/v1/previews/00000000-0000-4000-8000-000000000000/files',
        { type: 'batch', seq: 1, ops: [] },
        /body\.ops/,
      ],
      [
        'files: backslash',
        'PUT',
        '/v1/previews/00000000-0000-4000-8000-000000000000/files',
        { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a\\b', content: '' }] },
        /body\.ops\.0\.path.*rule backslash/,
      ],
      [
        'register: bad name',
        'POST',
        '/v1/nodes/register',
        {
          joinToken: 'x'.repeat(20),
          name: 'a b',
          url: 'http://x',
          capacity: { slots: 1, used: 0, warm: {} },
          runtime: 'docker',
        },
        /body\.name/,
      ],
      [
        'register: bad runtime',
        'POST',
        '/v1/nodes/register',
        {
          joinToken: 'x'.repeat(20),
          name: 'ab',
          url: 'http://x',
          capacity: { slots: 1, used: 0, warm: {} },
          runtime: 'vm',
        },
        /body\.runtime/,
      ],
      [
        'heartbeat: bad capacity',
        'POST',
        '/v1/nodes/heartbeat',
        { capacity: { slots: -1, used: 0, warm: {} }, sessions: [], at: 1 },
        /body\.capacity\.slots/,
      ],
    ];
    it.each(bad)('%s', async (_name, method, path, body, field, headers) => {
      const who: Who = path.includes('heartbeat') ? 'node' : 'owner';
      const res = await req(path, {
        method,
        who,
        headers,
        ...(body === '' ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      });
      const json = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status, json.error.message).toBe(400);
      expect(json.error.message).toMatch(field);
    });
  });

  describe('create', () => {
    it('the same Idempotency-Key returns the same preview and never starts a second container', async () => {
      const docker = h.router.previews.tiers.docker as ReturnType<typeof createLocalServerTier>;
      const before = docker.creates;
      const key = `k-${Math.random()}`;
      const body = JSON.stringify({ files: VITE_FILES, serverOnly: true });
      const a = await req('/v1/previews', { method: 'POST', body, headers: { 'idempotency-key': key } });
      const b = await req('/v1/previews', { method: 'POST', body, headers: { 'idempotency-key': key } });
      expect([a.status, b.status]).toEqual([201, 200]);
      const [ja, jb] = (await Promise.all([a.json(), b.json()])) as Array<{ id: string; tier: string }>;
      expect(jb!.id).toBe(ja!.id);
      expect(ja!.tier).toBe('docker');
      expect(docker.creates - before).toBe(1);
    });

    it('concurrent creates with one Idempotency-Key: one preview, one container', async () => {
      const docker = h.router.previews.tiers.docker as ReturnType<typeof createLocalServerTier>;
      const before = docker.creates;
      const key = `c-${Math.random()}`;
      const body = JSON.stringify({ files: VITE_FILES, serverOnly: true });
      const all = await Promise.all(
        Array.from({ length: 6 }, () =>
          req('/v1/previews', { method: 'POST', body, headers: { 'idempotency-key': key } }),
        ),
      );
      expect(all.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
      const ids = new Set(await Promise.all(all.map(async (r) => ((await r.json()) as { id: string }).id)));
      expect(ids.size).toBe(1);
      expect(docker.creates - before).toBe(1);
      const { rows } = await h.db.pool.query(
        'SELECT count(*)::int AS n FROM preview_sessions WHERE idempotency_key = $1',
        [key],
      );
      expect(rows[0].n).toBe(1);
    });

    it('the same key for another user is another preview', async () => {
      const key = `u-${Math.random()}`;
      const body = JSON.stringify({ files: VITE_FILES, client: { webcontainer: true } });
      const a = (await (
        await req('/v1/previews', { method: 'POST', body, headers: { 'idempotency-key': key } })
      ).json()) as { id: string };
      const b = (await (
        await req('/v1/previews', { method: 'POST', body, who: 'other', headers: { 'idempotency-key': key } })
      ).json()) as { id: string };
      expect(a.id).not.toBe(b.id);
    });

    it('files are persisted to project_files and a server preview gets a tokenised previewUrl', async () => {
      const p = await createPreview('owner', { files: VITE_FILES, serverOnly: true });
      expect(p.previewUrl).toMatch(new RegExp(`^http://${p.id}\\.preview\\.localhost(:\\d+)?/\\?token=`));
      expect(await h.router.store.loadFiles(p.id)).toEqual(VITE_FILES);
      const put = await req(`/v1/previews/${p.id}/files`, {
        method: 'PUT',
        body: JSON.stringify({
          type: 'batch',
          seq: 7,
          ops: [
            { op: 'rename', from: 'main.js', to: 'src/main.js' },
            { op: 'put', path: 'b.txt', content: 'aGk=', encoding: 'base64' },
          ],
        }),
      });
      expect(put.status).toBe(200);
      expect(await put.json()).toEqual({
        applied: { type: 'ack', seq: 7, stage: 'applied' },
        persisted: { type: 'ack', seq: 7, stage: 'persisted' },
      });
      const files = await h.router.store.loadFiles(p.id);
      expect(files['src/main.js']).toBe('console.log(1)');
      expect(files['main.js']).toBeUndefined();
      expect(files['b.txt']).toBe('hi');
      const docker = h.router.previews.tiers.docker as ReturnType<typeof createLocalServerTier>;
      expect(docker.files(p.id)?.get('src/main.js')).toBe('console.log(1)'); // forwarded to the tier
    });

    it('list pages with a cursor, newest first, hiding ended previews unless all=true', async () => {
      const r = await createHarness({
        db: h.db,
        tiers: () => ({ browser: createBrowserTier() }),
        env: { MAX_LIVE_PREVIEWS_PER_USER: '100' },
      });
      try {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const res = await r.router.app.request('/v1/previews', {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...bearer(r.alice.jwt) },
            body: JSON.stringify({ files: VITE_FILES, client: { webcontainer: true } }),
          });
          ids.push(((await res.json()) as { id: string }).id);
        }
        await r.router.app.request(`/v1/previews/${ids[0]}`, {
          method: 'DELETE',
          headers: bearer(r.alice.jwt),
        });
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const q: string = `/v1/previews?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
          const page = (await (await r.router.app.request(q, { headers: bearer(r.alice.jwt) })).json()) as {
            previews: Array<{ id: string }>;
            nextCursor: string | null;
          };
          seen.push(...page.previews.map((p) => p.id));
          cursor = page.nextCursor;
        } while (cursor);
        expect(seen).toEqual(ids.slice(1).reverse());
        const all = (await (
          await r.router.app.request('/v1/previews?all=true', { headers: bearer(r.alice.jwt) })
        ).json()) as {
          previews: Array<{ id: string; state: string }>;
        };
        expect(all.previews.map((p) => p.id)).toEqual([...ids].reverse());
        expect(all.previews.at(-1)?.state).toBe('ended');
        const bad = await r.router.app.request('/v1/previews?cursor=bm9wZQ', {
          headers: bearer(r.alice.jwt),
        });
        expect(bad.status).toBe(400);
        expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/query\.cursor/);
      } finally {
        await r.close();
      }
    });

    it('state transitions are guarded: delete is repeat-safe, an ended preview cannot be suspended or resumed', async () => {
      const p = await createPreview('owner');
      expect((await req(`/v1/previews/${p.id}`, { method: 'DELETE' })).status).toBe(204);
      expect((await req(`/v1/previews/${p.id}`, { method: 'DELETE' })).status).toBe(204);
      const sus = await req(`/v1/previews/${p.id}/suspend`, { method: 'POST' });
      expect(sus.status).toBe(409);
      // Nor resumed: answered as an edit is, not 200 with the ended state.
      const res = await req(`/v1/previews/${p.id}/resume`, { method: 'POST' });
      expect(res.status).toBe(409);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('preview_ended');
      await expect(h.router.store.transition(p.id, 'ready')).rejects.toThrow(/ended; it cannot become ready/);
    });
  });

  describe('fall-through and caps', () => {
    let f: Harness;
    beforeAll(async () => {
      f = await createHarness({
        db: h.db,
        env: { MAX_LIVE_PREVIEWS_PER_USER: '2' },
        tiers: () => ({
          browser: createBrowserTier(),
          docker: createDownTier('docker'),
          fly: createLocalServerTier({ name: 'fly', autoReady: true }),
        }),
      });
    });
    afterAll(async () => {
      await f?.close();
    });

    it('a failing tier falls through to the next under the same preview id, and the reasons say so', async () => {
      const res = await f.router.app.request('/v1/previews', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(f.alice.jwt) },
        body: JSON.stringify({ files: VITE_FILES }),
      });
      expect(res.status).toBe(201);
      const p = (await res.json()) as {
        id: string;
        tier: string;
        reasons: unknown[];
        placement: { previewId: string };
      };
      expect(p.tier).toBe('fly');
      expect(p.placement.previewId).toBe(p.id);
      expect(p.reasons).toEqual([
        {
          tier: 'browser',
          outcome: 'skipped',
          reason: 'the browser reports neither WebContainers nor the bundler runtime',
        },
        { tier: 'docker', outcome: 'failed', reason: 'docker is down (test)' },
        { tier: 'fly', outcome: 'chosen', reason: 'vite-vanilla app runs on the fly tier (local)' },
      ]);
      const { rows } = await f.db.pool.query(
        'SELECT count(*)::int AS n FROM preview_sessions WHERE user_id = $1',
        [f.alice.id],
      );
      expect(rows[0].n).toBe(1);
    });

    it('a per-user cap on live previews (429 too_many_previews)', async () => {
      const create = () =>
        f.router.app.request('/v1/previews', {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...bearer(f.bob.jwt) },
          body: JSON.stringify({ files: VITE_FILES, client: { bundler: true } }),
        });
      expect((await create()).status).toBe(201);
      expect((await create()).status).toBe(201);
      const third = await create();
      expect(third.status).toBe(429);
      expect(((await third.json()) as { error: { code: string } }).error.code).toBe('too_many_previews');
    });
  });

  describe('placement deadline (PLACE_TIMEOUT_MS)', () => {
    const createOn = async (env: Record<string, string>, slowMs: number) => {
      const f = await createHarness({
        db: h.db,
        env,
        tiers: () => ({
          docker: withSlowCreate(createLocalServerTier({ autoReady: true }), slowMs),
          fly: createLocalServerTier({ name: 'fly', autoReady: true }),
        }),
      });
      try {
        const res = await f.router.app.request('/v1/previews', {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...bearer(f.alice.jwt) },
          body: JSON.stringify({ files: VITE_FILES, serverOnly: true }),
        });
        expect(res.status).toBe(201);
        return (await res.json()) as {
          tier: string;
          state: string;
          reasons: { tier: string; outcome: string; reason: string }[];
        };
      } finally {
        await f.close();
      }
    };

    it('a tier slower than the deadline is given up for the next, the reason says so', async () => {
      const p = await createOn({ PLACE_TIMEOUT_MS: '200' }, 5_000);
      expect(p.tier).toBe('fly');
      expect(p.reasons.find((r) => r.tier === 'docker')).toMatchObject({ outcome: 'failed' });
      expect(p.reasons.find((r) => r.tier === 'docker')?.reason).toMatch(/timeout|timed out/i);
    });

    it('a tier that takes a while but answers within the deadline keeps the preview', async () => {
      const p = await createOn({ PLACE_TIMEOUT_MS: '10000' }, 300);
      expect(p.tier).toBe('docker');
      expect(['starting', 'ready']).toContain(p.state);
    });
  });

  describe('rate limits', () => {
    it.each([false, true])('429 with Retry-After per user and per IP (redis: %s)', async (redis) => {
      const r = await createHarness({
        db: h.db,
        redis,
        env: { RATE_LIMIT_USER_PER_MIN: '3', RATE_LIMIT_IP_PER_MIN: '5' },
        tiers: () => ({}),
      });
      try {
        const get = (t: string) => r.router.app.request('/v1/previews', { headers: bearer(t) });
        const statuses = [];
        for (let i = 0; i < 4; i++) statuses.push((await get(r.alice.jwt)).status);
        expect(statuses).toEqual([200, 200, 200, 429]);
        const limited = await get(r.alice.jwt);
        expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        expect(((await limited.json()) as { error: { code: string } }).error.code).toBe('rate_limited');
        // bob has his own user bucket but shares the IP bucket (5/min), already spent by alice.
        expect((await get(r.bob.jwt)).status).toBe(429);
      } finally {
        await r.close();
      }
    });
  });
});
