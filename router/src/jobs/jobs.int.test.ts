import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createTestRedis } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createFlyTier } from '@preview/tiers/fly';
import {
  type FakeMachinesApi,
  FLY_MACHINES_API_FIXTURE,
  startFakeMachinesApi,
} from '@preview/tiers/testkit/fly';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { bearer, createHarness, type Harness, silent, VITE_FILES } from '../../test/harness.ts';
import { createLocalServerTier } from '../../test/local-tier.ts';
import { until } from '../../test/processes.ts';
import { classify } from '../placement/classify.ts';
import { idleJob, reconcileJob } from './jobs.ts';
import { createBullScheduler, createMemoryScheduler, type Scheduler } from './scheduler.ts';

/** The jobs' collaborators from a test router: idle after an hour, destroyed after a day. */
const jobDeps = (h: Harness) => ({
  previews: h.router.previews,
  nodes: h.router.nodes,
  log: silent,
  metrics: h.router.metrics,
  idleSuspendMs: 60 * 60_000,
  idleDestroyMs: 24 * 60 * 60_000,
});

/** A GET with an explicit Host through a real server (the preview proxy streams on Node's HTTP server). */
function hostGet(port: number, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; text: () => string }>(
    (resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: () => body }));
      });
      req.on('error', reject);
      req.end();
    },
  );
}

describe('scheduled jobs (real Postgres)', () => {
  let h: Harness;
  const fleet = createLocalServerTier({ autoReady: true });
  const deps = () => jobDeps(h);
  const createReady = async () => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: VITE_FILES, serverOnly: true }),
    });
    const { id } = (await res.json()) as { id: string };
    await h.router.previews.waitReady(id, 20_000);
    return id;
  };
  const age = (id: string, hours: number) =>
    h.db.pool.query(
      `UPDATE preview_sessions SET last_edit_at = now() - make_interval(hours => $2), last_view_at = now() - make_interval(hours => $2) WHERE id = $1`,
      [id, hours],
    );

  beforeAll(async () => {
    h = await createHarness({
      env: { MAX_LIVE_PREVIEWS_PER_USER: '1000' },
      tiers: () => ({ browser: createBrowserTier(), docker: fleet }),
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('idle: suspends after IDLE_SUSPEND_MS, destroys after IDLE_DESTROY_MS, leaves active previews alone', async () => {
    const idle = await createReady();
    const active = await createReady();
    await age(idle, 2);
    const first = await idleJob(deps());
    expect(first.suspended).toBeGreaterThanOrEqual(1);
    expect((await h.router.store.get(idle))?.state).toBe('suspended');
    expect((await fleet.status(idle))?.phase).toBe('suspended');
    expect((await h.router.store.get(active))?.state).toBe('ready');
    await age(idle, 25);
    await idleJob(deps());
    expect((await h.router.store.get(idle))?.state).toBe('ended');
    expect(await fleet.status(idle)).toBeUndefined();
  });

  it('activity: a page view counts; HMR sockets, fetches and health probes do not', async () => {
    const id = await createReady();
    const link = await h.router.app.request(`/v1/previews/${id}`, { headers: bearer(h.alice.jwt) });
    const token = new URL(((await link.json()) as { previewUrl: string }).previewUrl).searchParams.get(
      'token',
    )!;
    const server = serve({
      fetch: h.router.app.fetch,
      hostname: '127.0.0.1',
      port: 0,
    }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    onTestFinished(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const port = (server.address() as AddressInfo).port;
    const host = `${id}.preview.localhost`;
    const redirect = await hostGet(port, `/?token=${token}`, { host });
    const cookie = String(redirect.headers['set-cookie']?.[0]).split(';')[0]!;
    const seen = async () =>
      (
        await h.db.pool.query<{ t: Date }>('SELECT last_view_at AS t FROM preview_sessions WHERE id = $1', [
          id,
        ])
      ).rows[0]!.t.getTime();
    await age(id, 2);
    const before = await seen();
    for (const [path, dest] of [
      ['/main.js', 'script'],
      ['/', 'empty'],
      ['/__preview/health', 'document'],
    ] as const) {
      const r = await hostGet(port, path, { host, cookie, 'sec-fetch-dest': dest });
      expect(r.status).not.toBe(401);
    }
    expect(await seen()).toBe(before);
    const view = await hostGet(port, '/', { host, cookie, 'sec-fetch-dest': 'document' });
    // A browser's page gets the activity client (README "Idle and activity"), and is otherwise the app's.
    const client = '<script src="/__router/activity.js" async></script>';
    expect(view.text()).toContain(client);
    expect(view.text().replace(client, '')).toBe(VITE_FILES['index.html']);
    for (let i = 0; i < 50 && (await seen()) === before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await seen()).toBeGreaterThan(before);
  });

  it('reconcile: a node that stopped heartbeating → its sessions are migrated and re-placed from stored files', async () => {
    const id = await createReady();
    const creates = fleet.creates;
    await h.router.nodes.liveness.forget(h.nodeId);
    const r = await reconcileJob(deps());
    expect(r.migrated).toBeGreaterThanOrEqual(1);
    expect(fleet.creates).toBeGreaterThan(creates);
    const s = await h.router.store.get(id);
    expect(['starting', 'ready']).toContain(s?.state);
    expect(s?.reasons.at(-1)).toMatchObject({ tier: 'docker', outcome: 'chosen' });
    expect(fleet.files(id)?.get('index.html')).toBe(VITE_FILES['index.html']);
    const events = await h.router.events.recent(id);
    expect(events.some((e) => e.type === 'state' && e.state === 'migrating')).toBe(true);
  });

  it('reconcile: a session a live node no longer holds (its agent restarted within a node TTL) is re-placed; one placed after the beat, or a node just registered, is left', async () => {
    const lost = await createReady();
    const fresh = await createReady();
    // `lost` was placed a minute ago; `fresh` just now, after the beat below was taken.
    await h.db.pool.query(
      `UPDATE preview_sessions SET updated_at = now() - interval '1 minute' WHERE id = $1`,
      [lost],
    );
    const migrating = async (id: string) =>
      (await h.router.events.recent(id)).some((e) => e.type === 'state' && e.state === 'migrating');
    const beat = (at: number) =>
      h.router.nodes.heartbeat(h.nodeId, { capacity: { slots: 4, used: 0, warm: {} }, sessions: [], at });
    const node = await h.db.pool.query<{ name: string }>('SELECT name FROM preview_nodes WHERE id = $1', [
      h.nodeId,
    ]);
    // Registered again (the agent's process started): its sessions are not known until it heartbeats.
    await h.router.nodes.register({
      joinToken: h.joinToken,
      name: node.rows[0]!.name,
      url: 'http://127.0.0.1:1',
      capacity: { slots: 4, used: 0, warm: {} },
      runtime: 'process',
    });
    await reconcileJob(deps());
    expect(await migrating(lost)).toBe(false);
    // Its first heartbeat holds neither.
    await beat(Date.now() - 1_000);
    const creates = fleet.creates;
    const r = await reconcileJob(deps());
    expect(r.migrated).toBeGreaterThanOrEqual(1);
    expect(await migrating(lost)).toBe(true);
    expect(fleet.creates).toBeGreaterThan(creates);
    expect(['starting', 'ready']).toContain((await h.router.store.get(lost))?.state);
    expect(fleet.files(lost)?.get('index.html')).toBe(VITE_FILES['index.html']);
    expect(await migrating(fresh)).toBe(false);
    expect((await h.router.store.get(fresh))?.state).toBe('ready');
  });

  it('reconcile: while the liveness store has kept beats for less than a node TTL (Redis restarted), no node is taken for dead', async () => {
    const id = await createReady();
    await h.router.nodes.liveness.forget(h.nodeId);
    const l = h.router.nodes.liveness;
    const keptSince = l.keptSince;
    l.keptSince = async () => Date.now() - 1_000;
    try {
      expect((await reconcileJob({ ...deps(), nodeTtlMs: 4_000 })).migrated).toBe(0);
      expect((await h.router.store.get(id))?.state).toBe('ready');
    } finally {
      l.keptSince = keptSince;
    }
    // Kept long enough: the node without a beat is dead, its preview moves.
    l.keptSince = async () => Date.now() - 5_000;
    try {
      expect((await reconcileJob({ ...deps(), nodeTtlMs: 4_000 })).migrated).toBeGreaterThanOrEqual(1);
    } finally {
      l.keptSince = keptSince;
    }
  });

  it('reconcile: a placement abandoned mid-way (untouched past PLACING_STALE_MS) with no stored files fails; a stale starting one is watched again', async () => {
    // A replica killed while placing: its row stopped being touched 40 s ago (well under 5 minutes).
    const { rows } = await h.db.pool.query<{ id: string }>(
      `INSERT INTO preview_sessions (user_id, template, state, updated_at) VALUES ($1, 'vite-vanilla', 'provisioning', now() - interval '40 seconds') RETURNING id`,
      [h.alice.id],
    );
    const stuck = rows[0]!.id;
    const ready = await createReady();
    // A ready preview whose row says `starting` for a while, as if its placing replica had died.
    await h.db.pool.query(
      `UPDATE preview_sessions SET state = 'starting', updated_at = now() - interval '1 minute' WHERE id = $1`,
      [ready],
    );
    const r = await reconcileJob(deps());
    // No files were stored with it: nothing to place.
    expect(r.stuckFailed).toBeGreaterThanOrEqual(1);
    expect((await h.router.store.get(stuck))?.state).toBe('failed');
    expect(r.watched).toBeGreaterThanOrEqual(1);
    await h.router.previews.waitReady(ready, 20_000);
  });

  it('reconcile: a create abandoned mid-placement with its files stored is placed under the same id', async () => {
    // What a replica killed during POST /v1/previews leaves: the row and its files, no placement.
    const { session } = await h.router.store.create({
      userId: h.alice.id,
      template: 'vite-vanilla',
      classification: classify(VITE_FILES),
      maxLive: 100,
      files: VITE_FILES,
    });
    await h.db.pool.query(
      `UPDATE preview_sessions SET updated_at = now() - interval '40 seconds' WHERE id = $1`,
      [session.id],
    );
    expect((await h.router.store.get(session.id))?.state).toBe('provisioning');
    const r = await reconcileJob(deps());
    expect(r.createsTakenOver).toBe(1);
    await h.router.previews.waitReady(session.id, 20_000);
    const placed = await h.router.store.get(session.id);
    expect(placed).toMatchObject({ state: 'ready', tier: 'docker' });
    expect(fleet.files(session.id)?.get('index.html')).toBe(VITE_FILES['index.html']);
    // A second reconcile finds nothing left to take over.
    expect((await reconcileJob(deps())).createsTakenOver).toBe(0);
  });

  it('reconcile: a placement in flight keeps its row touched and is left alone, however long it takes', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const create = fleet.create;
    // Only this test's create waits (reconcile may place others meanwhile).
    fleet.create = async (spec, o) => {
      if (spec.files['gated.txt'] !== undefined) await gate;
      return await create(spec, o);
    };
    onTestFinished(() => {
      fleet.create = create;
      release();
    });
    const pending = h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: { ...VITE_FILES, 'gated.txt': 'slow' }, serverOnly: true }),
    });
    const id = await until('the create in provisioning', async () => {
      const { rows } = await h.db.pool.query<{ id: string }>(
        `SELECT id::text FROM preview_sessions WHERE user_id = $1 AND state = 'provisioning' ORDER BY created_at DESC LIMIT 1`,
        [h.alice.id],
      );
      return rows[0]?.id;
    });
    // As if it had been placing for a long time: the placing replica touches the row again.
    await h.db.pool.query(
      `UPDATE preview_sessions SET updated_at = now() - interval '40 seconds' WHERE id = $1`,
      [id],
    );
    await until('the placing replica to touch the row', async () => {
      const { rows } = await h.db.pool.query<{ fresh: boolean }>(
        `SELECT updated_at > now() - interval '20 seconds' AS fresh FROM preview_sessions WHERE id = $1`,
        [id],
      );
      return rows[0]?.fresh ? true : undefined;
    });
    await reconcileJob(deps());
    expect((await h.router.store.get(id))?.state).toBe('provisioning');
    release();
    expect((await pending).status).toBe(201);
    await h.router.previews.waitReady(id, 20_000);
  });

  it('reconcile: a migration abandoned mid-way (its replica died; no node any more) is taken over and re-placed', async () => {
    const id = await createReady();
    // The replica that moved it to `migrating` (node cleared) died before placing it anywhere.
    await h.db.pool.query(
      `UPDATE preview_sessions SET state = 'migrating', node_id = NULL, updated_at = now() - interval '40 seconds' WHERE id = $1`,
      [id],
    );
    const r = await reconcileJob(deps());
    expect(r.migrated).toBeGreaterThanOrEqual(1);
    expect((await h.router.previews.waitReady(id, 20_000)).state).toBe('ready');
    expect(fleet.files(id)?.get('index.html')).toBe(VITE_FILES['index.html']);
    // Two replicas finding the same abandoned migration: one takes it over, the other gets nothing.
    await h.db.pool.query(
      `UPDATE preview_sessions SET state = 'migrating', node_id = NULL, updated_at = now() - interval '40 seconds' WHERE id = $1`,
      [id],
    );
    const before = new Date(Date.now() - 30_000);
    const claims = await Promise.all([
      h.router.store.claimStale(id, 'migrating', before),
      h.router.store.claimStale(id, 'migrating', before),
    ]);
    expect(claims.filter(Boolean)).toHaveLength(1);
    await h.router.previews.continueMigration(claims.find(Boolean)!);
    await h.router.previews.waitReady(id, 20_000);
  });

  it('reconcile: a sandbox a live node reports without a live session is destroyed', async () => {
    const id = await createReady();
    // The session ends without the tier hearing of it (e.g. a replica crashed mid-delete).
    await h.router.store.transition(id, 'stopping');
    await h.router.store.transition(id, 'ended');
    await h.router.nodes.heartbeat(h.nodeId, {
      capacity: { slots: 4, used: 1, warm: {} },
      sessions: [id],
      at: Date.now(),
    });
    const reaped = async () => (await h.router.metrics.orphansReaped.get()).values[0]?.value ?? 0;
    const before = await reaped();
    const r = await reconcileJob(deps());
    expect(r.orphansDestroyed).toBe(1);
    expect(await fleet.status(id)).toBeUndefined();
    expect(await reaped()).toBe(before + 1);
  });

  it('metrics: errors by code, suspensions and wakes, live previews by tier and node, as /metrics shows them', async () => {
    const id = await createReady();
    const text = async () => (await h.router.app.request('/metrics')).text();
    const value = (body: string, series: string) =>
      Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1] ?? 0);
    const before = await text();
    const missing = await h.router.app.request('/v1/previews/00000000-0000-4000-8000-000000000000', {
      headers: bearer(h.alice.jwt),
    });
    expect(missing.status).toBe(404);
    await h.router.previews.suspend(h.alice.id, id);
    await h.router.previews.resume(h.alice.id, id);
    await h.router.previews.waitReady(id, 20_000);
    const after = await text();
    const errors = 'preview_api_errors_total{code="not_found",status="404"}';
    expect(value(after, errors)).toBe(value(before, errors) + 1);
    const suspended = 'preview_state_changes_total{state="suspended"}';
    expect(value(after, suspended)).toBe(value(before, suspended) + 1);
    expect(value(after, 'preview_wakes_total')).toBe(value(before, 'preview_wakes_total') + 1);
    // The live count by tier and node: this preview is on the docker tier, on the harness's node.
    const node = (
      await h.db.pool.query<{ name: string }>('SELECT name FROM preview_nodes WHERE id = $1', [h.nodeId])
    ).rows[0]!.name;
    expect(value(after, `preview_live_placements{tier="docker",node="${node}"}`)).toBeGreaterThanOrEqual(1);
  });

  it('reconcile: a sandbox a node still reports after its session moved to another node is destroyed; one on its own node stays', async () => {
    const moved = await createReady();
    const stays = await createReady();
    // `moved` was re-placed on another node (say this one missed heartbeats and came back).
    const { rows } = await h.db.pool.query<{ id: string }>(
      `INSERT INTO preview_nodes (name, url, runtime, credential_hash) VALUES ($1, 'http://127.0.0.1:9', 'docker', 'x') RETURNING id::text`,
      [`other-${moved.slice(0, 8)}`],
    );
    const other = rows[0]!.id;
    // The other node is alive (so nothing is migrated); it reports nothing of its own here, in a
    // heartbeat taken just before `moved` was placed on it.
    await h.router.nodes.heartbeat(other, {
      capacity: { slots: 4, used: 1, warm: {} },
      sessions: [],
      at: Date.now(),
    });
    await h.db.pool.query('UPDATE preview_sessions SET node_id = $2, updated_at = now() WHERE id = $1', [
      moved,
      other,
    ]);
    await h.db.pool.query('UPDATE preview_sessions SET node_id = $2 WHERE id = $1', [stays, h.nodeId]);
    await h.router.nodes.heartbeat(h.nodeId, {
      capacity: { slots: 4, used: 2, warm: {} },
      sessions: [moved, stays],
      at: Date.now(),
    });
    const r = await reconcileJob(deps());
    expect(r.orphansDestroyed).toBe(1);
    expect(await fleet.status(moved)).toBeUndefined();
    expect(await fleet.status(stays)).toBeDefined();
  });
});

describe('reconcile: machines a tier lists without a live session (fly, fake Machines API)', () => {
  let h: Harness;
  let fake: FakeMachinesApi;
  let fly: ReturnType<typeof createFlyTier>;

  beforeAll(async () => {
    // Machines here run nothing: reconciliation only lists and destroys them.
    fake = await startFakeMachinesApi({
      apiSchemaPath: FLY_MACHINES_API_FIXTURE,
      runner: null,
      regions: ['ams'],
    });
    fly = createFlyTier({
      client: { token: fake.token, app: fake.app, baseUrl: fake.url, retryBaseMs: 20, retryCapMs: 200 },
      appUrl: fake.edgeUrl,
      image: 'registry.fly.io/preview-base:test',
      regions: fake.regions,
      daemonTokenSecret: 'test-secret-0123456789abcdef',
      maxMachines: 10,
    });
    h = await createHarness({ tiers: () => ({ browser: createBrowserTier(), fly }) });
  });
  afterAll(async () => {
    await h?.close();
    await fake?.close();
  });

  /** A machine as the fly tier makes one, for preview `previewId`. */
  const machineFor = (previewId: string) =>
    fly.client.createMachine({
      config: {
        image: 'registry.fly.io/preview-base:test',
        metadata: { preview_id: previewId, managed_by: 'preview-router' },
      },
    });
  const session = async (state: string, tier: string | null) => {
    const { rows } = await h.db.pool.query<{ id: string }>(
      `INSERT INTO preview_sessions (user_id, template, state, tier) VALUES ($1, 'vite-react', $2, $3) RETURNING id::text`,
      [h.alice.id, state, tier],
    );
    return rows[0]!.id;
  };
  const running = async () =>
    new Set(
      fake
        .machines()
        .filter((m) => m.state !== 'destroying' && m.state !== 'destroyed')
        .map((m) => m.config?.metadata?.['preview_id']),
    );

  it('destroys those past the grace period whose session ended, moved to another tier or never existed; keeps live ones', async () => {
    const ended = await session('ended', 'fly');
    const moved = await session('ready', 'docker');
    const live = await session('ready', 'fly');
    const placing = await session('provisioning', null);
    const unknown = '00000000-0000-4000-8000-000000000000';
    for (const id of [ended, moved, live, placing, unknown]) await machineFor(id);
    const deps = (orphanGraceMs: number) => ({ ...jobDeps(h), orphanGraceMs });
    // All of them were made a moment ago: inside the grace period nothing is touched.
    expect((await reconcileJob(deps(60_000))).orphansDestroyed).toBe(0);
    expect(await running()).toEqual(new Set([ended, moved, live, placing, unknown]));
    expect((await reconcileJob(deps(0))).orphansDestroyed).toBe(3);
    expect(await running()).toEqual(new Set([live, placing]));
    // Nothing left to do the second time.
    expect((await reconcileJob(deps(0))).orphansDestroyed).toBe(0);
  });
});

describe('schedulers run registered jobs repeatedly, never overlapping', () => {
  const cases: Array<[string, () => { s: Scheduler; cleanup(): Promise<void> }]> = [
    ['in-process', () => ({ s: createMemoryScheduler({ log: silent }), cleanup: async () => {} })],
    [
      'BullMQ',
      () => {
        const r = createTestRedis();
        return {
          s: createBullScheduler({ redis: r.redis, prefix: r.prefix, log: silent }),
          cleanup: r.cleanup,
        };
      },
    ],
  ];
  it.each(cases)('%s', async (_name, make) => {
    const { s, cleanup } = make();
    let runs = 0;
    let running = 0;
    let overlapped = false;
    s.every('tick', 50, async () => {
      if (running++) overlapped = true;
      await new Promise((r) => setTimeout(r, 20));
      running--;
      return ++runs;
    });
    try {
      await s.start();
      for (let i = 0; i < 200 && runs < 3; i++) await new Promise((r) => setTimeout(r, 50));
      expect(runs).toBeGreaterThanOrEqual(3);
      expect(overlapped).toBe(false);
      expect(await s.runNow('tick')).toBeGreaterThan(0);
    } finally {
      await s.close();
      await cleanup();
    }
  });
});
