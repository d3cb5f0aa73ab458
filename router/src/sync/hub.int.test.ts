import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, createTestRedis, type TestDatabase } from '@preview/testkit';
import { CloseCodes, LIMITS, PreviewError, type SyncChannel } from '@preview/tiers';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  connectRawEditor,
  type RawEditor,
  serveSyncHub,
  startDirectorySandbox,
} from '../../test/sync/index.ts';
import { migrate } from '../db/migrate.ts';
import { createMemoryPubSub, createRedisPubSub, type PubSub } from '../infra/pubsub.ts';
import { createSyncHub, type SyncHub, type SyncHubDeps } from './hub.ts';
import { createMemorySyncState, createRedisSyncState, type SyncState } from './state.ts';
import { openWebSocketChannel } from './ws-channel.ts';

const silent = process.env.SYNC_DEBUG
  ? { debug: console.log, info: console.log, warn: console.log, error: console.log }
  : { debug() {}, info() {}, warn() {}, error() {} };

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  await migrate(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function newPreview(): Promise<string> {
  const id = randomUUID();
  await db.pool.query(
    `INSERT INTO preview_sessions (id, user_id, template, state) VALUES ($1, $2, 'vite-react', 'ready')`,
    [id, randomUUID()],
  );
  return id;
}

async function sandbox() {
  const dir = await mkdtemp(join(tmpdir(), 'sync-sandbox-'));
  const sb = await startDirectorySandbox({ dir });
  cleanups.push(
    () => rm(dir, { recursive: true, force: true }),
    () => sb.close(),
  );
  return sb;
}

async function replica(opts: {
  pubsub: PubSub;
  state: SyncState;
  sandboxUrl: string;
  leaseMs?: number;
  pool?: pg.Pool;
  /** The hub's other collaborators, where a test needs its own (a logger, a channel). */
  hub?: Partial<SyncHubDeps>;
}) {
  const hub: SyncHub = createSyncHub({
    pool: opts.pool ?? db.pool,
    pubsub: opts.pubsub,
    state: opts.state,
    log: silent,
    leaseMs: opts.leaseMs ?? 1000,
    openChannel: () => openWebSocketChannel({ url: opts.sandboxUrl }),
    ...opts.hub,
  });
  const srv = await serveSyncHub(hub);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await srv.close();
    await hub.close();
  };
  cleanups.push(close);
  return { hub, srv, close, url: (id: string) => `ws://127.0.0.1:${srv.port}/v1/previews/${id}/sync` };
}

async function editor(url: string, opts: Parameters<typeof connectRawEditor>[1] = {}): Promise<RawEditor> {
  const e = await connectRawEditor(url, opts);
  cleanups.push(() => e.close());
  return e;
}

async function dbFiles(previewId: string): Promise<Record<string, string>> {
  const r = await db.pool.query<{ path: string; content: Buffer }>(
    'SELECT path, content FROM project_files WHERE preview_id = $1 ORDER BY path',
    [previewId],
  );
  return Object.fromEntries(r.rows.map((x) => [x.path, x.content.toString('utf8')]));
}

async function sandboxFiles(sb: Awaited<ReturnType<typeof sandbox>>): Promise<Record<string, string>> {
  return Object.fromEntries([...(await sb.files())].sort().map(([p, c]) => [p, c.toString('utf8')]));
}

function local() {
  return { pubsub: createMemoryPubSub(), state: createMemorySyncState() };
}

describe('sync hub (one replica, real Postgres, directory test sandbox)', () => {
  it('applies put, rename and delete in order, acks applied then persisted, and persists with hashes', async () => {
    const sb = await sandbox();
    const r = await replica({ ...local(), sandboxUrl: sb.url });
    const id = await newPreview();
    const e = await editor(r.url(id), { clientId: 'c1' });
    e.send({
      type: 'batch',
      seq: 1,
      ops: [
        { op: 'put', path: 'src/a.ts', content: 'A' },
        { op: 'put', path: 'b.txt', content: 'B' },
      ],
    });
    e.send({ type: 'batch', seq: 2, ops: [{ op: 'rename', from: 'src/a.ts', to: 'src/c.ts' }] });
    e.send({
      type: 'batch',
      seq: 3,
      ops: [
        { op: 'delete', path: 'b.txt' },
        { op: 'put', path: 'src/a.ts', content: 'A2' },
      ],
    });
    await e.waitFor(() => e.acked(3, 'persisted'));
    const expected = { 'src/a.ts': 'A2', 'src/c.ts': 'A' };
    expect(await sandboxFiles(sb)).toEqual(expected);
    expect(await dbFiles(id)).toEqual(expected);
    const order = e.frames
      .filter((f) => f.type === 'ack' && f.stage === 'applied')
      .map((f) => (f as { seq: number }).seq);
    expect(order).toEqual([1, 2, 3]);
    const row = await db.pool.query(
      "SELECT content_hash, size FROM project_files WHERE preview_id = $1 AND path = 'src/c.ts'",
      [id],
    );
    expect(row.rows[0]).toEqual({
      content_hash: '559aead08264d5795d3909718cdd05abd49572e84fe55590eef31a88a08fdffd',
      size: 1,
    });
    const s = await db.pool.query('SELECT last_seq FROM preview_sessions WHERE id = $1', [id]);
    expect(Number(s.rows[0].last_seq)).toBeGreaterThan(0);
  });

  it('persists a rename whose source was persisted by an earlier flush (rename step in SQL)', async () => {
    const sb = await sandbox();
    const r = await replica({ ...local(), sandboxUrl: sb.url });
    const id = await newPreview();
    const e = await editor(r.url(id), { clientId: 'c1' });
    e.send({
      type: 'batch',
      seq: 1,
      ops: [
        { op: 'put', path: 'x/one.ts', content: '1' },
        { op: 'put', path: 'two.ts', content: '2' },
      ],
    });
    await e.waitFor(() => e.acked(1, 'persisted'));
    e.send({ type: 'batch', seq: 2, ops: [{ op: 'rename', from: 'x/one.ts', to: 'two.ts' }] });
    await e.waitFor(() => e.acked(2, 'persisted'));
    expect(await dbFiles(id)).toEqual({ 'two.ts': '1' });
    expect(await sandboxFiles(sb)).toEqual({ 'two.ts': '1' });
  });

  it('answers a malformed frame, a bad path and an oversized file with coded errors, writes nothing, and stays usable', async () => {
    const sb = await sandbox();
    const r = await replica({ ...local(), sandboxUrl: sb.url });
    const id = await newPreview();
    const e = await editor(r.url(id), { clientId: 'c1' });
    e.send('{not json');
    e.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: '../etc/passwd', content: 'x' }] });
    e.send({
      type: 'batch',
      seq: 2,
      ops: [{ op: 'put', path: 'big.bin', content: 'a'.repeat(LIMITS.fileBytes + 1) }],
    });
    e.send({ type: 'batch', seq: 3, ops: [{ op: 'explode', path: 'a' }] });
    e.send({ type: 'batch', seq: 4, ops: [{ op: 'put', path: 'ok.txt', content: 'fine' }] });
    await e.waitFor(() => e.acked(4, 'persisted'));
    const errors = e.frames.filter((f) => f.type === 'error');
    expect(errors.map((f) => [f.code, (f as { seq?: number }).seq])).toEqual([
      ['malformed_frame', undefined],
      ['invalid_path', 1],
      ['too_large', 2],
      ['invalid_frame', 3],
    ]);
    expect(errors[1]?.message).toMatch(/traversal/);
    expect(await sandboxFiles(sb)).toEqual({ 'ok.txt': 'fine' });
    expect(await dbFiles(id)).toEqual({ 'ok.txt': 'fine' });
  });

  it('closes with 1009 (tooBig) a frame over LIMITS.frameBytes', async () => {
    const sb = await sandbox();
    const r = await replica({ ...local(), sandboxUrl: sb.url });
    const id = await newPreview();
    const e = await editor(r.url(id), { clientId: 'c1' });
    e.send('x'.repeat(LIMITS.frameBytes + 1));
    expect((await e.waitClosed()).code).toBe(CloseCodes.tooBig);
    expect(await dbFiles(id)).toEqual({});
  });

  it('serves two editors on one preview: one order per preview, acks carry each editor’s own seq', async () => {
    const sb = await sandbox();
    const r = await replica({ ...local(), sandboxUrl: sb.url });
    const id = await newPreview();
    const a = await editor(r.url(id), { clientId: 'alice' });
    const b = await editor(r.url(id), { clientId: 'bob' });
    a.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'shared.ts', content: 'from alice' }] });
    await a.waitFor(() => a.acked(1, 'applied'));
    b.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'shared.ts', content: 'from bob' }] });
    await b.waitFor(() => b.acked(1, 'persisted'));
    for (let i = 0; i < 20; i++) {
      a.send({ type: 'batch', seq: 2 + i, ops: [{ op: 'put', path: `a/${i}.ts`, content: `a${i}` }] });
      b.send({ type: 'batch', seq: 2 + i, ops: [{ op: 'put', path: `b/${i}.ts`, content: `b${i}` }] });
    }
    await a.waitFor(() => a.acked(21, 'persisted'));
    await b.waitFor(() => b.acked(21, 'persisted'));
    const files = await dbFiles(id);
    expect(files['shared.ts']).toBe('from bob');
    expect(Object.keys(files)).toHaveLength(41);
    expect(await sandboxFiles(sb)).toEqual(files);
    // Each editor sees only acks for its own seqs.
    const ackedPaths = (e: RawEditor) => e.frames.filter((f) => f.type === 'ack').length;
    expect(ackedPaths(a)).toBeGreaterThan(0);
    expect(ackedPaths(b)).toBeGreaterThan(0);
    // The last write to shared.ts came from bob, and the row carries the later global seq.
    const seqs = await db.pool.query(
      "SELECT path, seq FROM project_files WHERE preview_id = $1 AND path IN ('shared.ts', 'a/0.ts')",
      [id],
    );
    expect(seqs.rows).toHaveLength(2);
  });

  it('replays after reconnect: acks the client missed are sent after hello, re-sent batches are not applied twice', async () => {
    const sb = await sandbox();
    const r = await replica({ ...local(), sandboxUrl: sb.url });
    const id = await newPreview();
    const e1 = await editor(r.url(id), { clientId: 'c1' });
    e1.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: '1' }] });
    e1.send({ type: 'batch', seq: 2, ops: [{ op: 'rename', from: 'a.txt', to: 'b.txt' }] });
    e1.send({ type: 'batch', seq: 3, ops: [{ op: 'put', path: 'a.txt', content: 'new a' }] });
    // The sandbox has all three; the editor goes away before it reads any `persisted` ack.
    await e1.waitFor(() => e1.acked(3, 'applied'));
    e1.ws.terminate();
    for (let i = 0; i < 100 && Object.keys(await dbFiles(id)).length < 2; i++)
      await new Promise((res) => setTimeout(res, 50));
    await r.hub.drained();
    const e2 = await editor(r.url(id), { clientId: 'c1', lastAckedSeq: 0 });
    await e2.waitFor(() => e2.acked(3, 'persisted'));
    // The client does not know what arrived, so it re-sends everything unacked, in order.
    e2.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: '1' }] });
    e2.send({ type: 'batch', seq: 2, ops: [{ op: 'rename', from: 'a.txt', to: 'b.txt' }] });
    e2.send({ type: 'batch', seq: 3, ops: [{ op: 'put', path: 'a.txt', content: 'new a' }] });
    e2.send({ type: 'batch', seq: 4, ops: [{ op: 'put', path: 'c.txt', content: 'c' }] });
    await e2.waitFor(() => e2.acked(4, 'persisted'));
    const expected = { 'a.txt': 'new a', 'b.txt': '1', 'c.txt': 'c' };
    expect(await sandboxFiles(sb)).toEqual(expected);
    expect(await dbFiles(id)).toEqual(expected);
  });
});

describe('sync hub: HTTP batches while the owner starts', () => {
  it('a batch submitted while the new owner reserves its first seqs is taken once, not answered 409 duplicate_seq', async () => {
    const sb = await sandbox();
    // Holds the owner's start (its `SELECT last_seq`) until released, so a second batch arrives then.
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let held = false;
    const pool = new Proxy(db.pool, {
      get(target, key) {
        if (key === 'query')
          return async (...args: Parameters<pg.Pool['query']>) => {
            if (!held && /SELECT last_seq FROM preview_sessions/.test(String(args[0]))) {
              held = true;
              await gate;
            }
            return (target.query as (...a: unknown[]) => unknown)(...args);
          };
        const v = Reflect.get(target, key);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as pg.Pool;
    const r = await replica({ ...local(), sandboxUrl: sb.url, pool });
    const id = await newPreview();
    const put = (seq: number, content: string) =>
      r.hub.submit(id, {
        type: 'batch',
        seq,
        ops: [{ op: 'put', path: `f${seq}.txt`, content, encoding: 'utf8' }],
      });
    const first = put(1, 'one');
    await expect.poll(() => held).toBe(true);
    const second = put(2, 'two');
    release();
    const [a, b] = await Promise.allSettled([first, second]);
    expect(a).toMatchObject({ status: 'fulfilled', value: { applied: { seq: 1 } } });
    expect(b).toMatchObject({ status: 'fulfilled', value: { applied: { seq: 2 } } });
    expect(await dbFiles(id)).toEqual({ 'f1.txt': 'one', 'f2.txt': 'two' });
    expect(await sandboxFiles(sb)).toEqual({ 'f1.txt': 'one', 'f2.txt': 'two' });
  });
});

describe('sync hub across replicas (Redis pub/sub and lease)', () => {
  it('carries batches from the editor’s replica to the replica that owns the channel, and fails over', async () => {
    const sb = await sandbox();
    const redisA = createTestRedis();
    const redisB = createTestRedis();
    const prefix = redisA.prefix;
    cleanups.push(
      () => redisA.cleanup(),
      () => redisB.redis.disconnect(),
    );
    const mk = (r: typeof redisA.redis) => ({
      pubsub: createRedisPubSub({ redis: r, prefix }),
      state: createRedisSyncState({ redis: r, prefix }),
    });
    const busA = mk(redisA.redis);
    const busB = mk(redisB.redis);
    cleanups.push(
      () => busA.pubsub.close(),
      () => busB.pubsub.close(),
    );
    const A = await replica({ ...busA, sandboxUrl: sb.url, leaseMs: 600 });
    const B = await replica({ ...busB, sandboxUrl: sb.url, leaseMs: 600 });
    const id = await newPreview();

    // An editor on B first: B takes the lease and opens the channel.
    const onB = await editor(B.url(id), { clientId: 'first' });
    onB.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'b.txt', content: 'b' }] });
    await onB.waitFor(() => onB.acked(1, 'persisted'));
    expect(B.hub.owned()).toEqual([id]);

    const onA = await editor(A.url(id), { clientId: 'second' });
    onA.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'via redis' }] });
    await onA.waitFor(() => onA.acked(1, 'persisted'));
    expect(A.hub.owned()).toEqual([]);
    expect(sb.connections()).toBe(1);
    expect(await sandboxFiles(sb)).toEqual({ 'a.txt': 'via redis', 'b.txt': 'b' });

    // B goes away: A takes over the lease, reopens the channel, and the editor on A keeps going.
    await B.close();
    onA.send({ type: 'batch', seq: 2, ops: [{ op: 'put', path: 'a.txt', content: 'after failover' }] });
    await onA.waitFor(() => onA.acked(2, 'persisted'));
    expect(A.hub.owned()).toEqual([id]);
    expect(await sandboxFiles(sb)).toEqual({ 'a.txt': 'after failover', 'b.txt': 'b' });
    expect(await dbFiles(id)).toEqual({ 'a.txt': 'after failover', 'b.txt': 'b' });
  });
});

/**
 * A replica that goes wrong mid-flight, in process. From `fail()` on, its Redis watermark writes never
 * land (`dropWatermarks`) and its COMMITs fail (`failCommits`). From `crash()` on it can neither renew
 * nor take the lease, so it steps down without flushing, as a replica whose renewals stopped reaching
 * Redis does.
 */
function doomed(shared: SyncState, faults: { dropWatermarks?: boolean; failCommits?: boolean }) {
  let failing = false;
  let crashed = false;
  const state: SyncState = {
    ...shared,
    acquire: (...a) => (crashed ? Promise.resolve(false) : shared.acquire(...a)),
    renew: (...a) => (crashed ? Promise.resolve(false) : shared.renew(...a)),
    setWatermark: (...a) =>
      failing && faults.dropWatermarks ? new Promise<void>(() => {}) : shared.setWatermark(...a),
  };
  const pool = {
    query: (...a: Parameters<pg.Pool['query']>) => db.pool.query(...a),
    connect: () =>
      failing && faults.failCommits ? Promise.reject(new Error('database unreachable')) : db.pool.connect(),
  } as unknown as pg.Pool;
  return {
    state,
    pool,
    fail: () => {
      failing = true;
    },
    crash: () => {
      crashed = true;
    },
  };
}

describe('sync hub: a batch a new owner sends again is applied and persisted once', () => {
  async function failover(faults: { dropWatermarks?: boolean; failCommits?: boolean }) {
    const sb = await sandbox();
    const { pubsub, state } = local();
    const A = doomed(state, faults);
    const a = await replica({ pubsub, state: A.state, pool: A.pool, sandboxUrl: sb.url, leaseMs: 300 });
    const b = await replica({ pubsub, state, sandboxUrl: sb.url, leaseMs: 300 });
    const id = await newPreview();
    const e = await editor(a.url(id), { clientId: 'renamer' });
    e.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'old a' }] });
    await e.waitFor(() => e.acked(1, 'persisted'));
    expect(a.hub.owned()).toEqual([id]);
    A.fail();
    // Renamed, then its source written again: applying the rename a second time would move the new a.
    e.send({ type: 'batch', seq: 2, ops: [{ op: 'rename', from: 'a.txt', to: 'b.txt' }] });
    e.send({ type: 'batch', seq: 3, ops: [{ op: 'put', path: 'a.txt', content: 'new a' }] });
    await e.waitFor(() => e.acked(3, 'applied'));
    const expected = { 'a.txt': 'new a', 'b.txt': 'old a' };
    if (!faults.failCommits)
      for (let i = 0; i < 200 && JSON.stringify(await dbFiles(id)) !== JSON.stringify(expected); i++)
        await new Promise((r) => setTimeout(r, 25));
    // Another editor keeps a hub for the preview on B, so B contends for the lease.
    const other = await editor(b.url(id), { clientId: 'watcher' });
    A.crash();
    other.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'w.txt', content: 'w' }] });
    // B owns now; the editor's batches 2 and 3, never acked `persisted`, reach B again (A re-forwards them).
    await e.waitFor(() => e.acked(3, 'persisted'), 30_000);
    await other.waitFor(() => other.acked(1, 'persisted'), 30_000);
    expect(b.hub.owned()).toEqual([id]);
    const want = { ...expected, 'w.txt': 'w' };
    expect(await sandboxFiles(sb)).toEqual(want);
    expect(await dbFiles(id)).toEqual(want);
    return id;
  }

  it('the owner died after the sandbox applied a rename and a re-creation of its source, before Redis or Postgres had either', async () => {
    await failover({ dropWatermarks: true, failCommits: true });
  });

  it('the owner died after its COMMIT, before its watermarks reached Redis', async () => {
    const id = await failover({ dropWatermarks: true });
    const marks = await db.pool.query<{ client_id: string; persisted_seq: string }>(
      'SELECT client_id, persisted_seq FROM sync_client_marks WHERE preview_id = $1 ORDER BY client_id',
      [id],
    );
    expect(marks.rows.map((r) => [r.client_id, Number(r.persisted_seq)])).toEqual([
      ['renamer', 3],
      ['watcher', 1],
    ]);
  });
});

describe('sync hub: the sandbox channel is closing when a batch arrives', () => {
  /**
   * A channel in the state a WebSocket is in between the sandbox's close frame and the close event
   * (CLOSING): not open, `send` throws as WebSocketChannel's does; it closes when `finish()` is called.
   * `touched` counts what the owner asked of it (read `open` or sent).
   */
  function closingChannel() {
    const listeners = new Set<(code: number, reason: string) => void>();
    const ch = {
      touched: 0,
      get open() {
        ch.touched++;
        return false;
      },
      send() {
        ch.touched++;
        throw new PreviewError('channel_closed', 'sync channel is closed');
      },
      onFrame: () => () => {},
      onClose(l: (code: number, reason: string) => void) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      close() {
        ch.finish();
      },
      finish() {
        for (const l of [...listeners]) l(1006, '');
        listeners.clear();
      },
    };
    return ch satisfies SyncChannel;
  }

  it.each([
    ['closing (its close event follows)', true],
    ['closed before the owner listened (no close event comes)', false],
  ])(
    '%s: the batch goes on a new channel, applied and persisted, and the owner stays (no stall)',
    async (_, closeEventFollows) => {
      const sb = await sandbox();
      const closing = closingChannel();
      const errors: string[] = [];
      let opened = 0;
      const { hub, url } = await replica({
        ...local(),
        sandboxUrl: sb.url,
        hub: {
          log: { ...silent, error: (_o: unknown, msg?: string) => void errors.push(String(msg)) },
          openChannel: async () => (opened++ === 0 ? closing : openWebSocketChannel({ url: sb.url })),
        },
      });
      const id = await newPreview();
      const e = await editor(url(id), { clientId: 'c1' });
      e.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'A' }] });
      for (let i = 0; i < 400 && closing.touched === 0; i++) await new Promise((r) => setTimeout(r, 25));
      expect(closing.touched).toBeGreaterThan(0);
      if (closeEventFollows) closing.finish();
      await e.waitFor(() => e.acked(1, 'persisted'));
      expect(errors).toEqual([]);
      expect(hub.owned()).toEqual([id]);
      expect(opened).toBe(2);
      expect(await sandboxFiles(sb)).toEqual({ 'a.txt': 'A' });
      expect(await dbFiles(id)).toEqual({ 'a.txt': 'A' });
    },
  );
});

describe('sync hub backpressure', () => {
  it('closes an editor that does not read with 4008 (slowConsumer) instead of buffering without bound', async () => {
    const sb = await sandbox();
    const hub = createSyncHub({
      pool: db.pool,
      ...local(),
      log: silent,
      maxBufferedBytes: 256 * 1024,
      openChannel: () => openWebSocketChannel({ url: sb.url }),
    });
    const srv = await serveSyncHub(hub);
    cleanups.push(async () => {
      await srv.close();
      await hub.close();
    });
    const id = await newPreview();
    const e = await editor(`ws://127.0.0.1:${srv.port}/v1/previews/${id}/sync`, { clientId: 'slow' });
    // Let the hello complete first (one applied batch proves it): frames sent before that are held
    // in a bounded queue that closes with `overloaded` instead, which is a different rule.
    e.send({ type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'a' }] });
    await e.waitFor(() => e.acked(1, 'applied'));
    // Stop reading: the hub's answers pile up in the kernel buffers, then in ws's own queue.
    const raw = (e.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    raw.pause();
    // Each one-byte malformed frame costs the hub an error frame ~13× its size toward the editor.
    for (let i = 1; i <= 400_000; i++) e.send('x');
    await new Promise((r) => setTimeout(r, 4000));
    raw.resume();
    if (process.env.SYNC_DEBUG) {
      await new Promise((r) => setTimeout(r, 3000));
      console.log('frames', e.frames.length, e.closed, JSON.stringify(e.frames.at(-1)));
    }
    const closed = await e.waitClosed(30_000);
    expect(closed.code).toBe(CloseCodes.slowConsumer);
    expect(e.frames.length).toBeLessThan(400_000);
  });
});
