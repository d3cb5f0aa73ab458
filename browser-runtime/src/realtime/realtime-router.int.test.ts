import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import {
  createRouter,
  loadConfig,
  migrate,
  openWebSocketChannel,
  type PreviewRouter,
  signUserJwt,
} from '@preview/router';
import { startDirectorySandbox } from '@preview/router/testkit/sync';
import {
  createTestDatabase,
  createTestRedis,
  type FakeRealtimeServer,
  signSupabaseApiKey,
  startFakeRealtimeServer,
  TEST_REDIS_URL,
  type TestDatabase,
} from '@preview/testkit';
import type { FileBatch, Placement, SyncChannel, Tier } from '@preview/tiers';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { Redis } from 'ioredis';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { PreviewClient } from '../client/preview-client.ts';
import type { SyncSession } from '../client/sync-session.ts';
import type { WebSocketConstructor } from '../client/transport.ts';
import { realtimeTransport } from './realtime-transport.ts';

/**
 * Two real routers (REST, auth, sync hub, Realtime bridges) on one Postgres and one Redis, the
 * in-repo Realtime server as the Supabase endpoint, and the editor's real `PreviewClient` +
 * `realtimeTransport`. The server tier here places previews on directory test sandboxes, one per preview (a real
 * directory writer with the daemon's rules) and records every batch the hub sends it.
 */

// The project's API keys are JWTs with a `role` claim, signed with the project's secret, as Supabase's are.
let ANON: string;
let SERVICE: string;
const MAX = 32 * 1024;
const silent = pino({ level: 'silent' });

let db: TestDatabase;
let redis: ReturnType<typeof createTestRedis>;
let rt: FakeRealtimeServer;
/** One directory sandbox per preview (a sandbox keeps its own seq order, as the daemon does). */
const sandboxes = new Map<string, Awaited<ReturnType<typeof startDirectorySandbox>>>();
let dir: string;
let secret: string;
const sent: FileBatch[] = [];
const clients: SupabaseClient[] = [];
const sessions: SyncSession[] = [];
const replicas: Array<{
  router: PreviewRouter;
  server: Server;
  pool: pg.Pool;
  redis: Redis;
  baseUrl: string;
}> = [];

/** A supabase-js client with an API key; with `userJwt`, signed in as that user (its Realtime joins carry it). */
function supabase(key: string, userJwt?: string): SupabaseClient {
  const c = createClient(rt.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket as never },
    ...(userJwt ? { accessToken: async () => userJwt } : {}),
  });
  clients.push(c);
  return c;
}

/** A server tier whose sandboxes are directory test sandboxes; every batch sent to one is recorded. */
function directoryTier(): Tier {
  return {
    name: 'fly',
    async create(spec): Promise<Placement> {
      const own = await mkdtemp(join(dir, 'p-'));
      sandboxes.set(spec.previewId, await startDirectorySandbox({ dir: own }));
      return {
        tier: 'fly',
        previewId: spec.previewId,
        machineId: `m-${spec.previewId.slice(0, 8)}`,
        region: 'local',
        upstream: 'http://127.0.0.1:9',
        instanceId: 'i-local',
      };
    },
    async apply() {
      throw new Error('this test syncs through the hub only');
    },
    async openSync(previewId): Promise<SyncChannel> {
      const sb = sandboxes.get(previewId);
      if (!sb) throw new Error(`no sandbox for ${previewId}`);
      const ch = await openWebSocketChannel({ url: sb.url });
      return {
        onFrame: (l) => ch.onFrame(l),
        onClose: (l) => ch.onClose(l),
        get open() {
          return ch.open;
        },
        close: () => ch.close(),
        send(batch) {
          sent.push(batch);
          ch.send(batch);
        },
      };
    },
    async suspend() {},
    async resume() {},
    async destroy() {
      return true;
    },
    async status() {
      return { phase: 'ready' };
    },
    async capacity() {
      return { available: 100, total: 100 };
    },
    async close() {},
  };
}

async function replica() {
  const pool = new pg.Pool({ connectionString: db.url, max: 5 });
  pool.on('error', () => {});
  const r = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
  const config = loadConfig({
    SUPABASE_JWT_SECRET: secret,
    PREVIEW_TOKEN_SECRET: `${secret}-preview`,
    NODE_JOIN_TOKEN: randomBytes(16).toString('hex'),
    REDIS_URL: TEST_REDIS_URL,
    REDIS_PREFIX: redis.prefix,
  });
  const router = await createRouter({
    config,
    pool,
    redis: r,
    tiers: { fly: directoryTier() },
    log: silent,
    jobs: false,
    realtime: { client: supabase(SERVICE), maxMessageBytes: MAX, leaseMs: 600 },
  });
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: router.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s as Server));
  });
  router.attach(server);
  const rep = {
    router,
    server,
    pool,
    redis: r,
    baseUrl: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
  };
  replicas.push(rep);
  return rep;
}

async function stop(rep: (typeof replicas)[number]) {
  const i = replicas.indexOf(rep);
  if (i < 0) return;
  replicas.splice(i, 1);
  rep.server.closeAllConnections();
  await new Promise<void>((r) => rep.server.close(() => r()));
  await rep.router.close();
  rep.redis.disconnect();
  await rep.pool.end();
}

function client(baseUrl: string, token: string) {
  return new PreviewClient({ baseUrl, token, WebSocket: WebSocket as unknown as WebSocketConstructor });
}

/** An editor of `previewId` signed in as the holder of `jwt` (private channel, the default). */
function editor(c: PreviewClient, jwt: string, previewId: string): SyncSession {
  const s = c.sync(previewId, {
    transport: realtimeTransport({
      client: supabase(ANON, jwt),
      previewId,
      maxMessageBytes: MAX,
      router: c,
    }),
    backoff: { initialMs: 20, maxMs: 300 },
    pingMs: 500,
  });
  sessions.push(s);
  return s;
}

async function dbFiles(previewId: string): Promise<Record<string, string>> {
  const r = await db.pool.query<{ path: string; content: Buffer }>(
    'SELECT path, content FROM project_files WHERE preview_id = $1 ORDER BY path',
    [previewId],
  );
  return Object.fromEntries(r.rows.map((x) => [x.path, x.content.toString('utf8')]));
}

async function sandboxText(previewId: string, path: string): Promise<string | undefined> {
  return (await sandboxes.get(previewId)?.files())?.get(path)?.toString('utf8');
}

const running = () => replicas.flatMap((r) => r.router.realtime?.running() ?? []);

beforeAll(async () => {
  db = await createTestDatabase({ max: 5 });
  db.pool.on('error', () => {});
  await migrate(db.pool);
  redis = createTestRedis();
  secret = randomBytes(32).toString('hex');
  ANON = await signSupabaseApiKey({ secret, role: 'anon' });
  SERVICE = await signSupabaseApiKey({ secret, role: 'service_role' });
  rt = await startFakeRealtimeServer({
    apiKeys: [ANON, SERVICE],
    maxMessageBytes: MAX,
    authorization: { pool: db.pool, jwtSecret: secret },
  });
  dir = await mkdtemp(join(tmpdir(), 'rt-router-'));
});

afterAll(async () => {
  for (const s of sessions) s.close();
  for (const r of [...replicas]) await stop(r);
  for (const c of clients) {
    await c.removeAllChannels();
    c.realtime.disconnect();
  }
  await rt?.close();
  for (const sb of sandboxes.values()) await sb.close();
  await rm(dir, { recursive: true, force: true });
  await redis?.cleanup();
  await db?.drop();
});

describe('Supabase Realtime through two routers (hub + one bridge per preview)', () => {
  it('editor → bridge → hub → sandbox and project_files; one bridge; the other replica takes over and replays', async () => {
    const a = await replica();
    const b = await replica();
    const userId = randomUUID();
    const jwt = await signUserJwt({ secret, userId });
    const viaA = client(a.baseUrl, jwt);
    const viaB = client(b.baseUrl, jwt);
    const p = await viaA.create({ files: { 'index.html': '<h1>hi</h1>' }, serverOnly: true });
    expect(p.tier).toBe('fly');
    // Created on A: A started the bridge. The route on B finds it running there.
    await expect.poll(() => a.router.realtime?.running()).toEqual([p.id]);
    expect(await viaB.realtime(p.id)).toEqual({ topic: `preview:${p.id}` });
    expect(running()).toEqual([p.id]);

    const s = editor(viaB, jwt, p.id);
    const applied: number[] = [];
    const persisted: number[] = [];
    s.on('applied', (e) => applied.push(e.seq));
    s.on('persisted', (e) => persisted.push(e.seq));
    s.write('src/a.txt', 'a1');
    s.flush();
    s.write('src/b.txt', 'b1');
    await s.whenPersisted();
    expect(applied.at(-1)).toBe(2);
    expect(persisted.at(-1)).toBe(2);
    expect(await sandboxText(p.id, 'src/a.txt')).toBe('a1');
    expect(await dbFiles(p.id)).toEqual({
      'index.html': '<h1>hi</h1>',
      'src/a.txt': 'a1',
      'src/b.txt': 'b1',
    });
    // One bridge relayed each batch once.
    expect(sent.filter((x) => x.ops.some((o) => o.op === 'put' && o.content === 'a1'))).toHaveLength(1);
    const persistedBefore = new Set(['a1', 'b1']);

    // The holder goes away with edits in flight: B takes the lease, the editor replays what was not
    // persisted, and every edit lands.
    for (let i = 0; i < 20; i++) {
      s.write(`src/f${i}.txt`, `v${i}`);
      s.flush();
    }
    await stop(a);
    s.write('src/after.txt', 'after');
    await expect.poll(() => b.router.realtime?.running(), { timeout: 30_000 }).toEqual([p.id]);
    await s.whenPersisted();
    expect(running()).toEqual([p.id]);

    const files = await dbFiles(p.id);
    for (let i = 0; i < 20; i++) {
      expect(files[`src/f${i}.txt`]).toBe(`v${i}`);
      expect(await sandboxText(p.id, `src/f${i}.txt`)).toBe(`v${i}`);
    }
    expect(files['src/after.txt']).toBe('after');
    expect(s.unacked).toBe(0);
    // A's bridge, the editor, B's bridge and the editor again (it was told to resync and rejoined).
    const joins = rt.received.filter((m) => m.event === 'phx_join' && m.topic === `realtime:preview:${p.id}`);
    expect(joins.length).toBeGreaterThanOrEqual(4);
    expect(persisted.at(-1)).toBe(Math.max(...applied));
    // Acks only move forward, and batches persisted before the takeover were not sent again.
    expect([...persisted].sort((x, y) => x - y)).toEqual(persisted);
    for (const content of persistedBefore)
      expect(sent.filter((x) => x.ops.some((o) => o.op === 'put' && o.content === content))).toHaveLength(1);
    expect(rt.violations).toEqual([]);

    // Stopping the preview stops the bridge and frees the lease.
    await viaB.stop(p.id);
    await expect.poll(() => running()).toEqual([]);
    await expect.poll(() => redis.redis.get(`${redis.prefix}rt-bridge:${p.id}`)).toBeNull();
  });

  it('private channels: the owner joins and edits; another user and an anon client get nothing in and nothing out', async () => {
    const [a] = replicas.length ? replicas : [await replica()];
    if (!a) throw new Error('no replica');
    const ownerJwt = await signUserJwt({ secret, userId: randomUUID() });
    const bobJwt = await signUserJwt({ secret, userId: randomUUID() });
    const owner = client(a.baseUrl, ownerJwt);
    const p = await owner.create({ files: { 'index.html': 'x' }, serverOnly: true });
    await expect.poll(() => a.router.realtime?.running()).toEqual([p.id]);
    const topic = `preview:${p.id}`;

    // Listeners on the preview's topic: Bob (signed in) and an anon client, on the private channel
    // and on a public one of the same name.
    const heard: Array<{ who: string; payload: unknown }> = [];
    const listen = async (who: string, c: SupabaseClient, isPrivate: boolean) => {
      const ch = c.channel(topic, { config: { broadcast: { ack: true, self: false }, private: isPrivate } });
      ch.on('broadcast', { event: '*' }, (m) => heard.push({ who, payload: m.payload }));
      const status = await new Promise<string>((r) =>
        ch.subscribe((st) => {
          if (st !== 'CLOSED') r(st);
        }),
      );
      return { ch, status };
    };
    const bobPrivate = await listen('bob-private', supabase(ANON, bobJwt), true);
    const anonPrivate = await listen('anon-private', supabase(ANON), true);
    const bobPublic = await listen('bob-public', supabase(ANON, bobJwt), false);
    const anonPublic = await listen('anon-public', supabase(ANON), false);
    // The shipped realtime.messages policies refuse both joins of the private channel.
    expect(bobPrivate.status).toBe('CHANNEL_ERROR');
    expect(anonPrivate.status).toBe('CHANNEL_ERROR');
    expect(bobPublic.status).toBe('SUBSCRIBED');
    expect(anonPublic.status).toBe('SUBSCRIBED');

    // The owner joins the private channel and edits.
    const s = editor(owner, ownerJwt, p.id);
    s.write('src/owner.txt', 'mine');
    await s.whenPersisted();
    expect(await sandboxText(p.id, 'src/owner.txt')).toBe('mine');

    // Nothing out: what the outsiders broadcast as an editor (hello + batch) reaches no bridge.
    const attack = [
      { v: 1, from: 'intruder', id: 'i-1', frame: { type: 'hello', lastAckedSeq: 0, clientId: 'intruder' } },
      {
        v: 1,
        from: 'intruder',
        id: 'i-2',
        frame: { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'stolen.txt', content: 'x' }] },
      },
    ];
    for (const { ch } of [bobPublic, anonPublic, bobPrivate, anonPrivate])
      for (const payload of attack) await ch.send({ type: 'broadcast', event: 'c2s', payload });

    s.write('src/owner2.txt', 'mine too');
    await s.whenPersisted();
    await a.router.hub?.drained();
    expect(await sandboxText(p.id, 'src/owner2.txt')).toBe('mine too');
    expect(await sandboxText(p.id, 'stolen.txt')).toBeUndefined();
    expect((await dbFiles(p.id))['stolen.txt']).toBeUndefined();
    expect(sent.some((b) => b.ops.some((o) => 'path' in o && o.path === 'stolen.txt'))).toBe(false);
    // Nothing in: none of the owner's frames nor the bridge's replies reached a listener.
    expect(heard.filter((h) => h.who.endsWith('private'))).toEqual([]);
    expect(
      heard.filter((h) => JSON.stringify(h.payload).includes('owner') || (h.payload as { to?: string })?.to),
    ).toEqual([]);
    expect(rt.violations).toEqual([]);
    s.close();
    await owner.stop(p.id);
  });

  it('POST /v1/previews/:id/realtime is for the owner only', async () => {
    const [a] = replicas.length ? replicas : [await replica()];
    if (!a) throw new Error('no replica');
    const owner = client(a.baseUrl, await signUserJwt({ secret, userId: randomUUID() }));
    const p = await owner.create({ files: { 'index.html': 'x' }, serverOnly: true });
    expect(await owner.realtime(p.id)).toEqual({ topic: `preview:${p.id}` });

    const other = await signUserJwt({ secret, userId: randomUUID() });
    const asOther = await fetch(`${a.baseUrl}/v1/previews/${p.id}/realtime`, {
      method: 'POST',
      headers: { authorization: `Bearer ${other}` },
    });
    expect(asOther.status).toBe(404);
    expect(await asOther.json()).toMatchObject({ error: { code: 'not_found' } });
    const anonymous = await fetch(`${a.baseUrl}/v1/previews/${p.id}/realtime`, { method: 'POST' });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: { code: expect.any(String) } });

    // The transport gives up on a preview that is not the caller's instead of retrying.
    const s = editor(client(a.baseUrl, other), other, p.id);
    s.write('stolen.txt', 'x');
    await expect(s.whenPersisted()).rejects.toMatchObject({ code: 'not_found' });
    expect(s.state).toBe('closed');
    expect(await dbFiles(p.id)).toEqual({ 'index.html': 'x' });

    const spec = (await (await fetch(`${a.baseUrl}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    expect(spec.paths['/v1/previews/{id}/realtime']?.['post']).toBeDefined();
    await owner.stop(p.id);
  });
});
