import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createTestDatabase,
  createTestRedis,
  type FakeRealtimeServer,
  startFakeRealtimeServer,
  type TestDatabase,
} from '@preview/testkit';
import { BroadcastEvents, Envelope, encodeEnvelopes, LIMITS, type ServerFrame } from '@preview/tiers';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startDirectorySandbox } from '../../test/sync/dir-sandbox.ts';
import { createAccessTokens } from '../auth/access-token.ts';
import { migrate } from '../db/migrate.ts';
import { createMemoryLeases, createRedisLeases, type Leases } from '../infra/lease.ts';
import { createMemoryPubSub } from '../infra/pubsub.ts';
import { createSyncHub, type SyncHub } from '../sync/hub.ts';
import { createMemorySyncState } from '../sync/state.ts';
import { openWebSocketChannel } from '../sync/ws-channel.ts';
import { createRealtimeBridge, type RealtimeBridge } from './bridge.ts';
import { createRealtimeBridgeSet, type RealtimeBridgeSet } from './bridge-set.ts';

/**
 * The bridge between the real supabase-js client (service key) on the in-repo Realtime server and a
 * real sync hub (Postgres `project_files`, the directory test sandbox over a WebSocket SyncChannel).
 * Editors here are raw supabase-js channels sending envelopes by hand, so that malformed ones can be
 * sent too; browser-runtime's realtime tests drive the real `realtimeTransport` + `SyncSession`.
 */

const ANON = 'anon-key-for-tests';
const SERVICE = 'service-key-for-tests';
const MAX = 16 * 1024;
const log = { debug() {}, info() {}, warn() {}, error() {} };
// The router's editor tokens (what POST /v1/previews/:id/realtime mints), checked by the bridges here.
const tokens = createAccessTokens({ secret: randomUUID() });
const verifyEditor =
  (previewId: string, userId: string) =>
  async (token: string | undefined, editorId: string): Promise<boolean> =>
    token !== undefined &&
    (await tokens.verify(token, { previewId, kind: 'editor', editorId })).userId === userId;

let db: TestDatabase;
let rt: FakeRealtimeServer;
beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.pool);
  rt = await startFakeRealtimeServer({ apiKeys: [ANON, SERVICE], maxMessageBytes: MAX });
});
afterAll(async () => {
  await rt?.close();
  await db?.drop();
});

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function supabase(key: string): SupabaseClient {
  const c = createClient(rt.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket as never },
  });
  cleanups.push(async () => {
    await c.removeAllChannels();
    c.realtime.disconnect();
  });
  return c;
}

async function newPreview(
  state = 'ready',
  tier: string | null = 'docker',
): Promise<{ id: string; userId: string }> {
  const id = randomUUID();
  const userId = randomUUID();
  await db.pool.query(
    `INSERT INTO preview_sessions (id, user_id, template, state, tier) VALUES ($1, $2, 'vite-react', $3, $4)`,
    [id, userId, state, tier],
  );
  return { id, userId };
}

async function sandbox() {
  const dir = await mkdtemp(join(tmpdir(), 'rt-bridge-'));
  const sb = await startDirectorySandbox({ dir });
  cleanups.push(
    () => rm(dir, { recursive: true, force: true }),
    () => sb.close(),
  );
  return sb;
}

function hub(sandboxUrl: string): SyncHub {
  const h = createSyncHub({
    pool: db.pool,
    pubsub: createMemoryPubSub(),
    state: createMemorySyncState(),
    log,
    openChannel: () => openWebSocketChannel({ url: sandboxUrl }),
  });
  cleanups.push(() => h.close());
  return h;
}

async function dbFiles(previewId: string): Promise<Record<string, string>> {
  const r = await db.pool.query<{ path: string; content: Buffer }>(
    'SELECT path, content FROM project_files WHERE preview_id = $1 ORDER BY path',
    [previewId],
  );
  return Object.fromEntries(r.rows.map((x) => [x.path, x.content.toString('utf8')]));
}

/**
 * An editor on the preview's channel, speaking envelopes by hand; its hellos carry an editor token
 * minted for the preview's owner and this editor id (`token: null` → none, or a token of its own).
 * The channels here are public: this Realtime server has no database, so the private-channel
 * policies are tested with the router in browser-runtime's realtime-authorization test.
 */
async function rawEditor(previewId: string, from: string, o: { token?: string | null } = {}) {
  const owner = (
    await db.pool.query<{ user_id: string }>('SELECT user_id FROM preview_sessions WHERE id = $1', [
      previewId,
    ])
  ).rows[0]?.user_id;
  const token =
    o.token !== undefined
      ? o.token
      : await tokens.sign({ previewId, userId: owner ?? '', kind: 'editor', editorId: from, ttlMs: 60_000 });
  const ch = supabase(ANON).channel(`preview:${previewId}`, {
    config: { broadcast: { ack: true, self: false }, private: false },
  });
  const frames: ServerFrame[] = [];
  ch.on('broadcast', { event: BroadcastEvents.toEditor }, (m) => {
    const env = Envelope.safeParse(m.payload);
    if (env.success && 'frame' in env.data && (env.data.to === undefined || env.data.to === from))
      frames.push(env.data.frame as ServerFrame);
  });
  await new Promise<void>((r) => ch.subscribe((st) => st === 'SUBSCRIBED' && r()));
  let n = 0;
  return {
    frames,
    async send(sent: object) {
      const frame =
        (sent as { type?: unknown }).type === 'hello' && token ? { ...sent, editorToken: token } : sent;
      for (const payload of await encodeEnvelopes(frame, {
        from,
        id: `${from}-${++n}`,
        maxMessageBytes: MAX,
      }))
        expect(await ch.send({ type: 'broadcast', event: BroadcastEvents.toSandbox, payload })).toBe('ok');
    },
    async raw(payload: unknown) {
      expect(await ch.send({ type: 'broadcast', event: BroadcastEvents.toSandbox, payload })).toBe('ok');
    },
    ack: (stage: 'applied' | 'persisted', seq: number) =>
      expect.poll(() => frames.some((f) => f.type === 'ack' && f.stage === stage && f.seq >= seq)).toBe(true),
    error: (match: Record<string, unknown>) =>
      expect
        .poll(() =>
          frames.find(
            (f) =>
              f.type === 'error' &&
              Object.entries(match).every(([k, v]) => (f as Record<string, unknown>)[k] === v),
          ),
        )
        .toBeDefined(),
  };
}

function bridge(o: { previewId: string; userId: string; hub: SyncHub; maxEditors?: number }): RealtimeBridge {
  const b = createRealtimeBridge({
    ...o,
    realtime: supabase(SERVICE),
    maxMessageBytes: MAX,
    private: false,
    verifyEditor: verifyEditor(o.previewId, o.userId),
  });
  cleanups.push(() => b.close());
  return b;
}

const put = (seq: number, path: string, content: string) => ({
  type: 'batch',
  seq,
  ops: [{ op: 'put', path, content, encoding: 'utf8' }],
});

describe('realtime bridge → sync hub', () => {
  it('hands each editor to the hub: applied and persisted acks, files in the sandbox and project_files', async () => {
    const p = await newPreview();
    const sb = await sandbox();
    const h = hub(sb.url);
    await bridge({ previewId: p.id, userId: p.userId, hub: h }).ready;
    const ed = await rawEditor(p.id, 'ed-1');
    await ed.send({ type: 'hello', lastAckedSeq: 0, clientId: 'client-1' });
    await ed.send(put(1, 'src/a.txt', 'one'));
    // Larger than one broadcast message: chunked by the editor, reassembled by the bridge.
    await ed.send(put(2, 'big.txt', 'b'.repeat(3 * MAX)));
    await ed.ack('applied', 2);
    await ed.ack('persisted', 2);
    expect((await sb.files()).get('src/a.txt')?.toString()).toBe('one');
    expect(await dbFiles(p.id)).toEqual({ 'big.txt': 'b'.repeat(3 * MAX), 'src/a.txt': 'one' });

    // A reconnect (new hello from the same editor) replays seq 2: the hub acks it and does not write it twice.
    const before = ed.frames.length;
    await ed.send({ type: 'hello', lastAckedSeq: 1, clientId: 'client-1' });
    await ed.send(put(2, 'big.txt', 'replayed copy must not land'));
    await expect
      .poll(() =>
        ed.frames.slice(before).some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 2),
      )
      .toBe(true);
    await h.drained();
    expect((await dbFiles(p.id))['big.txt']).toBe('b'.repeat(3 * MAX));
    expect(rt.violations).toEqual([]);
  });

  it('answers a malformed envelope, an oversized frame and a bad path with error frames and writes nothing', async () => {
    const p = await newPreview();
    const sb = await sandbox();
    await bridge({ previewId: p.id, userId: p.userId, hub: hub(sb.url) }).ready;
    const ed = await rawEditor(p.id, 'bad-1');
    await ed.raw({ v: 1, from: 'bad-1', id: 'x', part: 'one' });
    await ed.error({ code: 'invalid_frame' });
    await ed.raw({
      v: 1,
      from: 'bad-1',
      id: 'big',
      part: 0,
      parts: 2,
      bytes: LIMITS.frameBytes + 1,
      sha256: 'a'.repeat(64),
      data: 'x',
    });
    await ed.error({ code: 'too_large' });
    await ed.send({ type: 'hello', lastAckedSeq: 0, clientId: 'client-bad' });
    await ed.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: '../escape.txt', content: 'x' }] });
    await ed.error({ code: 'invalid_path', seq: 1 });
    await ed.send({
      type: 'batch',
      seq: 2,
      ops: [{ op: 'put', path: 'a.txt', content: 'x'.repeat(LIMITS.fileBytes + 1) }],
    });
    await ed.error({ code: 'too_large', seq: 2 });
    // The refused seqs keep their place: the next good batch is acked through them.
    await ed.send(put(3, 'ok.txt', 'fine'));
    await ed.ack('persisted', 3);
    expect([...(await sb.files()).keys()]).toEqual(['ok.txt']);
    expect(await dbFiles(p.id)).toEqual({ 'ok.txt': 'fine' });
  });

  it('tells editors to resync: at start, when it never heard their hello, when the hub lets go, past maxEditors', async () => {
    const p = await newPreview();
    const sb = await sandbox();
    const early = await rawEditor(p.id, 'early');
    const h = hub(sb.url);
    const b = bridge({ previewId: p.id, userId: p.userId, hub: h, maxEditors: 2 });
    await b.ready;
    await early.error({ code: 'resync', message: 'bridge started' });

    const stranger = await rawEditor(p.id, 'stranger');
    await stranger.send(put(1, 'x.txt', 'x'));
    await stranger.error({ code: 'resync' });

    const e1 = await rawEditor(p.id, 'e1');
    const e2 = await rawEditor(p.id, 'e2');
    const e3 = await rawEditor(p.id, 'e3');
    await e1.send({ type: 'hello', lastAckedSeq: 0, clientId: 'c1' });
    await e2.send({ type: 'hello', lastAckedSeq: 0, clientId: 'c2' });
    await e1.send(put(1, 'one.txt', '1'));
    await e1.ack('persisted', 1);
    await e3.send({ type: 'hello', lastAckedSeq: 0, clientId: 'c3' });
    await e2.error({ code: 'resync' });
    expect(b.editors()).toBe(2);
    expect(e1.frames.some((f) => f.type === 'error' && f.message !== 'bridge started')).toBe(false);

    // The hub closing its sockets (shutdown) reaches the editors as resync.
    await h.close();
    await e1.error({ code: 'resync', message: '1001 router shutting down' });
    expect(b.editors()).toBe(0);
    expect((await sb.files()).has('x.txt')).toBe(false);
  });

  it('admits an editor only with an editor token for this preview, its owner and that editor id', async () => {
    const p = await newPreview();
    const other = await newPreview();
    const sb = await sandbox();
    const h = hub(sb.url);
    await bridge({ previewId: p.id, userId: p.userId, hub: h }).ready;
    const mint = (o: { previewId?: string; userId?: string; editorId: string }) =>
      tokens.sign({
        previewId: o.previewId ?? p.id,
        userId: o.userId ?? p.userId,
        kind: 'editor',
        editorId: o.editorId,
        ttlMs: 60_000,
      });
    const refusedEditors = [
      await rawEditor(p.id, 'no-token', { token: null }),
      await rawEditor(p.id, 'forged', { token: 'not.a.token' }),
      // Someone else's token, for another preview, for another editor id, of another kind.
      await rawEditor(p.id, 'stranger', {
        token: await mint({ userId: other.userId, editorId: 'stranger' }),
      }),
      await rawEditor(p.id, 'wrong-preview', {
        token: await mint({ previewId: other.id, userId: other.userId, editorId: 'wrong-preview' }),
      }),
      await rawEditor(p.id, 'wrong-id', { token: await mint({ editorId: 'someone-else' }) }),
      await rawEditor(p.id, 'link-token', {
        token: await tokens.sign({ previewId: p.id, userId: p.userId, kind: 'link', ttlMs: 60_000 }),
      }),
      await rawEditor(p.id, 'expired', {
        token: await tokens.sign({
          previewId: p.id,
          userId: p.userId,
          kind: 'editor',
          editorId: 'expired',
          ttlMs: -5_000,
        }),
      }),
    ];
    for (const [i, ed] of refusedEditors.entries()) {
      await ed.send({ type: 'hello', lastAckedSeq: 0, clientId: `bad-${i}` });
      await ed.error({ code: 'unauthorized' });
      await ed.send(put(1, `stolen-${i}.txt`, 'x'));
      await ed.error({ code: 'resync', message: 'unknown editor: send hello' });
    }
    const owner = await rawEditor(p.id, 'owner');
    await owner.send({ type: 'hello', lastAckedSeq: 0, clientId: 'owner' });
    await owner.send(put(1, 'mine.txt', 'mine'));
    await owner.ack('persisted', 1);
    await h.drained();
    expect([...(await sb.files()).keys()]).toEqual(['mine.txt']);
    expect(await dbFiles(p.id)).toEqual({ 'mine.txt': 'mine' });
  });

  it('checks its options and names the bad one', () => {
    const h = { handleSocket() {} };
    const realtime = supabase(SERVICE);
    expect(() => createRealtimeBridge({ previewId: '../x', userId: 'u', realtime, hub: h })).toThrow(
      /options.previewId/,
    );
    expect(() => createRealtimeBridge({ previewId: 'p', userId: '', realtime, hub: h })).toThrow(
      /options.userId/,
    );
    expect(() => createRealtimeBridge({ previewId: 'p', userId: 'u', realtime, hub: {} as never })).toThrow(
      /options.hub/,
    );
  });
});

describe('realtime bridge set: one bridge per preview across replicas', () => {
  let redis: ReturnType<typeof createTestRedis>;
  beforeEach(() => {
    redis = createTestRedis();
    cleanups.push(() => redis.cleanup());
  });

  function replica(leases: Leases, h: SyncHub): RealtimeBridgeSet {
    const set = createRealtimeBridgeSet({
      realtime: supabase(SERVICE),
      hub: h,
      leases,
      leaseMs: 300,
      maxMessageBytes: MAX,
      private: false,
      verifyEditor: (token, e) => verifyEditor(e.previewId, e.userId)(token, e.editorId),
      lookup: async (id) => {
        const r = await db.pool.query<{ user_id: string; state: string; tier: string | null }>(
          'SELECT user_id, state, tier FROM preview_sessions WHERE id = $1',
          [id],
        );
        const s = r.rows[0];
        return s?.tier && s.tier !== 'browser' && s.state === 'ready' ? { userId: s.user_id } : undefined;
      },
    });
    cleanups.push(() => set.close());
    return set;
  }

  it('runs one bridge on the lease holder; the other takes over when the holder closes', async () => {
    const p = await newPreview();
    const sb = await sandbox();
    const leases = createRedisLeases({ redis: redis.redis, prefix: redis.prefix });
    const a = replica(leases, hub(sb.url));
    const b = replica(leases, hub(sb.url));
    expect(await a.ensure(p.id)).toBe('here');
    expect(await b.ensure(p.id)).toBe('elsewhere');
    expect(await a.ensure(p.id)).toBe('here');
    expect(a.running()).toEqual([p.id]);
    expect(b.running()).toEqual([]);
    expect(b.watching()).toEqual([p.id]);
    expect(await redis.redis.get(`${redis.prefix}rt-bridge:${p.id}`)).toMatch(/#/);

    // One bridge answers: a frame is relayed once.
    const ed = await rawEditor(p.id, 'ed');
    await ed.send({ type: 'hello', lastAckedSeq: 0, clientId: 'c' });
    await ed.send(put(1, 'a.txt', 'A'));
    await ed.ack('persisted', 1);
    expect(ed.frames.filter((f) => f.type === 'ack' && f.stage === 'applied')).toHaveLength(1);

    await a.close();
    await expect.poll(() => b.running()).toEqual([p.id]);
    // The new bridge tells every editor to reconnect and replay.
    await ed.error({ code: 'resync', message: 'bridge started' });
    expect(await b.stop(p.id)).toBe(true);
    expect(await b.stop(p.id)).toBe(false);
    expect(await redis.redis.get(`${redis.prefix}rt-bridge:${p.id}`)).toBeNull();
  });

  it('refuses a preview without a live server-side sandbox, and stops when told it ended', async () => {
    const browser = await newPreview('ready', 'browser');
    const sb = await sandbox();
    const leases = createMemoryLeases();
    let ended: (() => void) | undefined;
    const set = createRealtimeBridgeSet({
      realtime: supabase(SERVICE),
      hub: hub(sb.url),
      leases,
      leaseMs: 300,
      private: false,
      verifyEditor: async () => false,
      lookup: async (id) => (id === browser.id ? undefined : { userId: 'u' }),
      watchEnd: async (_id, onEnd) => {
        ended = onEnd;
        return async () => {};
      },
    });
    cleanups.push(() => set.close());
    await expect(set.ensure(browser.id)).rejects.toMatchObject({ code: 'not_found' });
    expect(set.watching()).toEqual([]);
    expect(await leases.holder(`rt-bridge:${browser.id}`)).toBeUndefined();

    const live = randomUUID();
    expect(await set.ensure(live)).toBe('here');
    ended?.();
    await expect.poll(() => leases.holder(`rt-bridge:${live}`)).toBeUndefined();
    expect(set.running()).toEqual([]);
    expect(set.watching()).toEqual([]);
  });
});

describe('leases', () => {
  it.each([
    ['memory', () => ({ leases: createMemoryLeases(), done: async () => {} })],
    [
      'redis',
      () => {
        const r = createTestRedis();
        return { leases: createRedisLeases({ redis: r.redis, prefix: r.prefix }), done: () => r.cleanup() };
      },
    ],
  ])('%s: one holder at a time, renew only by the holder, taken over once lapsed', async (_name, make) => {
    const { leases, done } = make();
    cleanups.push(done);
    expect(await leases.acquire('k', 'a#1', 200)).toBe(true);
    expect(await leases.acquire('k', 'b#1', 200)).toBe(false);
    expect(await leases.renew('k', 'b#1', 200)).toBe(false);
    expect(await leases.renew('k', 'a#1', 200)).toBe(true);
    expect(await leases.holder('k')).toBe('a#1');
    await leases.release('k', 'b#1');
    expect(await leases.holder('k')).toBe('a#1');
    await expect.poll(() => leases.acquire('k', 'b#1', 5000), { interval: 50 }).toBe(true);
    expect(await leases.renew('k', 'a#1', 200)).toBe(false);
    await leases.release('k', 'b#1');
    expect(await leases.holder('k')).toBeUndefined();
  });
});
