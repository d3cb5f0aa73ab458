import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createMemoryPubSub,
  createMemorySyncState,
  createRealtimeBridge,
  createSyncHub,
  migrate,
  openWebSocketChannel,
  type RealtimeBridge,
  type SyncHub,
} from '@preview/router';
import { startDirectorySandbox } from '@preview/router/testkit/sync';
import {
  createTestDatabase,
  type FakeRealtimeServer,
  startFakeRealtimeServer,
  type TestDatabase,
} from '@preview/testkit';
import { LIMITS, type ServerFrame } from '@preview/tiers';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { SyncSession } from '../client/sync-session.ts';
import type { SyncTransport } from '../client/transport.ts';
import { previewTopic, realtimeTransport } from './realtime-transport.ts';

/**
 * The real supabase-js client (editor, anon key) → the in-repo Realtime server → the real supabase-js
 * client (bridge, service key) → the router's Realtime bridge → the router's sync hub (Postgres
 * `project_files`) → a real WebSocket SyncChannel → the directory test sandbox writing to a real
 * directory.
 */

const ANON = 'anon-key-for-tests';
const SERVICE = 'service-key-for-tests';
const MAX = 64 * 1024;

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ max: 10 });
  db.pool.on('error', () => {});
  await migrate(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

interface Rig {
  rt: FakeRealtimeServer;
  hub: SyncHub;
  userId: string;
  sandbox: Awaited<ReturnType<typeof startDirectorySandbox>>;
  dir: string;
  previewId: string;
  clients: SupabaseClient[];
  bridge?: RealtimeBridge;
  sessions: SyncSession[];
}

let rig: Rig;

function supabase(key: string, vsn: '1.0.0' | '2.0.0' = '2.0.0'): SupabaseClient {
  const c = createClient(rig.rt.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    // A short heartbeat so that the fake sees (and checks) heartbeats during a test.
    realtime: { transport: WebSocket as never, heartbeatIntervalMs: 500, vsn },
  });
  rig.clients.push(c);
  return c;
}

function startBridge(): RealtimeBridge {
  const service = supabase(SERVICE);
  const bridge = createRealtimeBridge({
    previewId: rig.previewId,
    userId: rig.userId,
    maxMessageBytes: MAX,
    realtime: service,
    hub: rig.hub,
    // Public channels: this Realtime server has no database to evaluate the private-channel policies
    // (those are tested with the router in realtime-authorization.int.test.ts).
    private: false,
  });
  rig.bridge = bridge;
  return bridge;
}

function session(vsn: '1.0.0' | '2.0.0' = '2.0.0', pingMs = 15_000): SyncSession {
  const s = new SyncSession({
    pingMs,
    transport: realtimeTransport({
      client: supabase(ANON, vsn),
      previewId: rig.previewId,
      maxMessageBytes: MAX,
      private: false,
    }),
    backoff: { initialMs: 20, maxMs: 200 },
  });
  rig.sessions.push(s);
  return s;
}

async function text(path: string): Promise<string | undefined> {
  return (await rig.sandbox.files()).get(path)?.toString('utf8');
}

beforeEach(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'preview-rt-'));
  const sandbox = await startDirectorySandbox({ dir });
  const previewId = randomUUID();
  const userId = randomUUID();
  await db.pool.query(
    `INSERT INTO preview_sessions (id, user_id, template, state, tier) VALUES ($1, $2, 'vite-react', 'ready', 'docker')`,
    [previewId, userId],
  );
  rig = {
    rt: await startFakeRealtimeServer({ apiKeys: [ANON, SERVICE], maxMessageBytes: MAX }),
    hub: createSyncHub({
      pool: db.pool,
      pubsub: createMemoryPubSub(),
      state: createMemorySyncState(),
      log: { debug() {}, info() {}, warn() {}, error() {} },
      openChannel: () => openWebSocketChannel({ url: sandbox.url }),
    }),
    userId,
    sandbox,
    dir,
    previewId,
    clients: [],
    sessions: [],
  };
});

async function dbText(path: string): Promise<string | undefined> {
  const r = await db.pool.query<{ content: Buffer }>(
    'SELECT content FROM project_files WHERE preview_id = $1 AND path = $2',
    [rig.previewId, path],
  );
  return r.rows[0]?.content.toString('utf8');
}

afterEach(async () => {
  for (const s of rig.sessions) s.close();
  await rig.bridge?.close();
  await rig.hub.close();
  for (const c of rig.clients) await c.removeAllChannels();
  for (const c of rig.clients) await c.realtime.disconnect();
  await rig.rt.close();
  await rig.sandbox.close();
  await rm(rig.dir, { recursive: true, force: true });
});

describe('Supabase Realtime transport (real supabase-js, fake Realtime server)', () => {
  it('delivers edits to the sandbox and brings applied and persisted acks back', async () => {
    await startBridge().ready;
    const s = session();
    const applied: number[] = [];
    const persisted: number[] = [];
    s.on('applied', (e) => applied.push(e.seq));
    s.on('persisted', (e) => persisted.push(e.seq));
    s.write('index.html', '<h1>hello</h1>');
    s.write('src/main.js', 'console.log(1)');
    await s.whenPersisted();
    s.write('src/main.js', 'console.log(2)');
    s.rename('index.html', 'home.html');
    await s.whenPersisted();

    expect(await text('src/main.js')).toBe('console.log(2)');
    expect(await text('home.html')).toBe('<h1>hello</h1>');
    expect(await text('index.html')).toBeUndefined();
    // Persisted means in project_files (the hub's write-behind), not just in the sandbox.
    expect(await dbText('src/main.js')).toBe('console.log(2)');
    expect(await dbText('home.html')).toBe('<h1>hello</h1>');
    expect(await dbText('index.html')).toBeUndefined();
    expect(applied).toEqual([1, 2]);
    expect(persisted).toEqual([1, 2]);
    // The client spoke vsn 2.0.0: broadcasts as binary userBroadcastPush, the rest as JSON arrays.
    expect(rig.rt.received.some((m) => m.binary && m.event === 'broadcast')).toBe(true);
    expect(
      rig.rt.received.some(
        (m) => m.topic === `realtime:${previewTopic(rig.previewId)}` && m.event === 'phx_join',
      ),
    ).toBe(true);
    await expect
      .poll(() => rig.rt.received.some((m) => m.topic === 'phoenix' && m.event === 'heartbeat'))
      .toBe(true);
    expect(rig.rt.violations).toEqual([]);
  });

  it('works with the vsn 1.0.0 JSON serializer too', async () => {
    await startBridge().ready;
    const s = session('1.0.0');
    s.write('v1.txt', 'x'.repeat(3 * MAX));
    await s.whenPersisted();
    expect(await text('v1.txt')).toBe('x'.repeat(3 * MAX));
    const v1 = rig.rt.received.filter((m) => m.vsn === '1.0.0' && m.event === 'broadcast');
    expect(v1.length).toBeGreaterThan(2);
    expect(v1.every((m) => !m.binary)).toBe(true);
    expect(rig.rt.violations).toEqual([]);
  });

  it('chunks a file larger than the broadcast payload limit and it arrives intact', async () => {
    await startBridge().ready;
    const s = session();
    // Multi-byte characters, quotes, backslashes and newlines: the JSON escaping changes the size.
    const unit = 'é€😀 "quoted" \\ back\nslash 0123456789 ';
    const big = unit.repeat(Math.ceil((5 * MAX) / unit.length));
    const bytes = new Uint8Array(3 * MAX).map((_, i) => (i * 7919) % 256);
    s.write('big.txt', big);
    s.write('public/blob.bin', bytes);
    await s.whenPersisted();

    const files = await rig.sandbox.files();
    expect(files.get('big.txt')?.toString('utf8')).toBe(big);
    expect(Buffer.compare(files.get('public/blob.bin') ?? Buffer.alloc(0), Buffer.from(bytes))).toBe(0);
    // The fake refuses any message over MAX; every chunk got through and there were many of them.
    expect(rig.rt.broadcasts()).toBeGreaterThan(8);
    expect(rig.rt.violations).toEqual([]);
  });

  it('answers malformed, bad-path and oversized frames with error frames and writes nothing', async () => {
    await startBridge().ready;
    const frames: ServerFrame[] = [];
    let t!: SyncTransport;
    await new Promise<void>((opened, failed) => {
      t = realtimeTransport({
        client: supabase(ANON),
        previewId: rig.previewId,
        maxMessageBytes: MAX,
        private: false,
      })({
        onOpen: opened,
        onFrame: (f) => frames.push(f),
        onClose: (code, reason) => failed(new Error(`closed ${code} ${reason}`)),
      });
    });
    const errorFor = (seq: number) =>
      expect
        .poll(() => frames.find((f) => f.type === 'error' && f.seq === seq), { timeout: 20_000 })
        .toBeDefined();

    t.send({ type: 'hello', lastAckedSeq: 0 });
    t.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: '../escape.txt', content: 'x' }] });
    await errorFor(1);
    t.send({
      type: 'batch',
      seq: 2,
      ops: [{ op: 'put', path: 'huge.txt', content: 'a'.repeat(LIMITS.fileBytes + 1) }],
    });
    await errorFor(2);
    t.send({ type: 'batch', seq: 3, ops: [{ op: 'chmod', path: 'a.txt' }] });
    await errorFor(3);
    t.send({ type: 'launch-missiles' });
    await expect
      .poll(() => frames.filter((f) => f.type === 'error' && f.seq === undefined).length)
      .toBeGreaterThanOrEqual(1);

    const codes = Object.fromEntries(
      frames.flatMap((f) => (f.type === 'error' && f.seq ? [[f.seq, f.code]] : [])),
    );
    expect(codes).toEqual({ 1: 'invalid_path', 2: 'too_large', 3: 'invalid_frame' });
    expect(frames.find((f) => f.type === 'error' && f.seq === undefined)).toMatchObject({
      code: 'invalid_frame',
    });

    // An envelope that is not one (sent raw, bypassing the transport) is refused too.
    const raw = supabase(ANON).channel(previewTopic(rig.previewId), {
      config: { broadcast: { ack: true, self: false } },
    });
    const rawReplies: unknown[] = [];
    raw.on('broadcast', { event: 's2c' }, (m) => rawReplies.push(m.payload));
    await new Promise<void>((r) => raw.subscribe((st) => st === 'SUBSCRIBED' && r()));
    expect(
      await raw.send({
        type: 'broadcast',
        event: 'c2s',
        payload: { v: 1, from: 'raw-editor', id: 'x', part: 'one' },
      }),
    ).toBe('ok');
    await expect
      .poll(() => rawReplies.find((p) => (p as { to?: string }).to === 'raw-editor'))
      .toMatchObject({ frame: { type: 'error', code: 'invalid_frame' } });

    // Nothing was written, and the connection is still usable: the refused seqs count as done.
    expect((await rig.sandbox.files()).size).toBe(0);
    expect(await dbText('escape.txt')).toBeUndefined();
    expect(await dbText('huge.txt')).toBeUndefined();
    t.send({ type: 'batch', seq: 4, ops: [{ op: 'put', path: 'ok.txt', content: 'fine' }] });
    await expect
      .poll(() => frames.find((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 4))
      .toBeDefined();
    expect([...(await rig.sandbox.files()).keys()]).toEqual(['ok.txt']);
    t.close();
    expect(rig.rt.violations).toEqual([]);
  });

  it('replays unacked batches after a reconnect', async () => {
    const s = session();
    await expect.poll(() => s.state).toBe('open');
    // No bridge yet: the broadcasts reach the service (acked) but nobody relays them.
    const persisted: number[] = [];
    s.on('persisted', (e) => persisted.push(e.seq));
    s.write('a.txt', 'A1');
    s.flush();
    s.write('b.txt', 'B1');
    s.flush();
    await expect.poll(() => rig.rt.broadcasts()).toBeGreaterThanOrEqual(2);
    expect(s.unacked).toBe(2);

    await startBridge().ready;
    s.reconnect();
    await s.whenPersisted();
    expect(persisted).toEqual([1, 2]);
    expect(await text('a.txt')).toBe('A1');
    expect(await text('b.txt')).toBe('B1');

    // The service drops every socket: both sides rejoin, the editor replays, nothing is lost.
    const joins = () => rig.rt.received.filter((m) => m.event === 'phx_join').length;
    const joinsBefore = joins();
    s.write('a.txt', 'A2');
    rig.rt.dropAll();
    s.write('c.txt', 'C1');
    await s.whenPersisted();
    expect(await text('a.txt')).toBe('A2');
    expect(await text('c.txt')).toBe('C1');
    // Both the editor and the bridge joined again.
    expect(joins()).toBeGreaterThanOrEqual(joinsBefore + 2);
    expect(rig.rt.violations).toEqual([]);
  });
});

describe('Realtime bridge with several editors and restarts', () => {
  it('serves two editors on one preview, each acked for its own seqs', async () => {
    await startBridge().ready;
    const a = session();
    const b = session();
    const acksA: number[] = [];
    const acksB: number[] = [];
    a.on('persisted', (e) => acksA.push(e.seq));
    b.on('persisted', (e) => acksB.push(e.seq));
    a.write('a.txt', 'from A');
    b.write('b.txt', 'from B');
    await Promise.all([a.whenPersisted(), b.whenPersisted()]);
    // Both use seq 1; the hub renumbers toward the sandbox and maps the acks back.
    expect(acksA).toEqual([1]);
    expect(acksB).toEqual([1]);
    // Same path from both: the later arrival at the hub wins.
    a.write('shared.txt', 'A');
    await a.whenPersisted();
    b.write('shared.txt', 'B');
    await b.whenPersisted();
    expect(await text('a.txt')).toBe('from A');
    expect(await text('b.txt')).toBe('from B');
    expect(await text('shared.txt')).toBe('B');
    expect(rig.bridge?.editors()).toBe(2);
  });

  it('a bridge that starts after the editor gets its unrelayed batches replayed (the bridge tells editors to resync when it starts)', async () => {
    const s = session('2.0.0', 300);
    await expect.poll(() => s.state).toBe('open');
    s.write('early.txt', 'written before any bridge ran');
    await expect.poll(() => rig.rt.broadcasts()).toBeGreaterThanOrEqual(1);
    expect(s.unacked).toBe(1);
    // No reconnect() here: the bridge answers the editor's next ping with resync, the session
    // reconnects and replays.
    await startBridge().ready;
    await s.whenPersisted();
    expect(await text('early.txt')).toBe('written before any bridge ran');
  });
});

describe('fake Realtime server checks what it receives', () => {
  async function rawSocket(vsn: string): Promise<{ ws: WebSocket; closed: Promise<number> }> {
    const ws = new WebSocket(`ws://127.0.0.1:${rig.rt.port}/realtime/v1/websocket?apikey=${ANON}&vsn=${vsn}`);
    const closed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    return { ws, closed };
  }

  it('closes with 1007 on message shapes realtime-js never sends', async () => {
    // vsn 2.0.0 text must be the 5-element array; the 1.0.0 object form is refused.
    const a = await rawSocket('2.0.0');
    a.ws.send(
      JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: '1', join_ref: null }),
    );
    expect(await a.closed).toBe(1007);
    // Binary kind 4 is server → client only.
    const b = await rawSocket('2.0.0');
    b.ws.send(Buffer.from([4, 1, 1, 0, 1, 0x74, 0x65, 0x7b, 0x7d]));
    expect(await b.closed).toBe(1007);
    // A join whose join_ref differs from its ref.
    const c = await rawSocket('2.0.0');
    c.ws.send(
      JSON.stringify([
        '9',
        '1',
        'realtime:x',
        'phx_join',
        { config: { presence: {}, postgres_changes: [] } },
      ]),
    );
    expect(await c.closed).toBe(1007);
    // vsn 1.0.0: an array is refused.
    const d = await rawSocket('1.0.0');
    d.ws.send(JSON.stringify([null, '1', 'phoenix', 'heartbeat', {}]));
    expect(await d.closed).toBe(1007);
    expect(rig.rt.violations).toHaveLength(4);
    expect(rig.rt.violations[0]).toMatch(/\[join_ref, ref, topic, event, payload\]/);
  });

  it('takes the real client through join, access_token and leave without a violation', async () => {
    const c = supabase(ANON);
    const ch = c.channel('preview:tokens', { config: { broadcast: { ack: true, self: true } } });
    const got: unknown[] = [];
    ch.on('broadcast', { event: 'echo' }, (m) => got.push(m.payload));
    await new Promise<void>((r) => ch.subscribe((st) => st === 'SUBSCRIBED' && r()));
    // self: true — the sender receives its own broadcast.
    expect(await ch.send({ type: 'broadcast', event: 'echo', payload: { n: 1 } })).toBe('ok');
    await expect.poll(() => got).toEqual([{ n: 1 }]);
    await c.realtime.setAuth('header.payload.signature');
    await expect.poll(() => rig.rt.received.some((m) => m.event === 'access_token')).toBe(true);
    expect(await c.removeChannel(ch)).toBe('ok');
    await expect
      .poll(() =>
        rig.rt.received.some((m) => m.event === 'phx_leave' && m.topic === 'realtime:preview:tokens'),
      )
      .toBe(true);
    expect(rig.rt.violations).toEqual([]);
  });

  it('accepts the published shapes and refuses unknown api keys', async () => {
    const a = await rawSocket('2.0.0');
    const replies: unknown[] = [];
    a.ws.on('message', (d) => replies.push(JSON.parse(d.toString())));
    a.ws.send(JSON.stringify([null, '1', 'phoenix', 'heartbeat', {}]));
    await expect
      .poll(() => replies)
      .toEqual([[null, '1', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]]);
    a.ws.close();
    const bad = new WebSocket(`ws://127.0.0.1:${rig.rt.port}/realtime/v1/websocket?apikey=nope&vsn=2.0.0`);
    await expect(
      new Promise((_r, j) => {
        bad.once('error', j);
      }),
    ).rejects.toThrow(/401/);
    expect(rig.rt.violations).toEqual([]);
  });
});
