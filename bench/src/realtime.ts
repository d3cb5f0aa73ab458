/**
 * `npm run bench -- realtime [--edits N] [--big-kib K]`: edit → `applied` ack through the Supabase
 * Realtime path (real supabase-js editor → fake Realtime server on loopback → router bridge → the
 * router's sync hub (Postgres write-behind) → the directory test sandbox), against the router-free reference of writing the same batch straight to
 * the sandbox's sync socket, in the same run. Also times a chunked file of `--big-kib` KiB.
 * The fake stands in for Supabase's hosted service, so these are the transport's own overheads, not
 * the hosted service's network latency.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { realtimeTransport } from '@preview/browser-runtime';
import {
  createMemoryPubSub,
  createMemorySyncState,
  createRealtimeBridge,
  createSyncHub,
  migrate,
  openWebSocketChannel,
} from '@preview/router';
import { startDirectorySandbox } from '@preview/router/testkit/sync';
import { createTestDatabase, startFakeRealtimeServer } from '@preview/testkit';
import type { ServerFrame } from '@preview/tiers';
import { createClient } from '@supabase/supabase-js';
import { WebSocket } from 'ws';
import { percentile, round1 } from './stats.ts';

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

export default async function realtime(args: string[]): Promise<object> {
  const edits = flag(args, 'edits', 200);
  const bigKib = flag(args, 'big-kib', 1024);
  const dir = await mkdtemp(join(tmpdir(), 'bench-rt-'));
  const sandbox = await startDirectorySandbox({ dir });
  const rt = await startFakeRealtimeServer({ apiKeys: ['anon', 'service'] });
  const opts = {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket as never },
  };
  const service = createClient(rt.url, 'service', opts);
  const editor = createClient(rt.url, 'anon', opts);
  const db = await createTestDatabase({ max: 10 });
  await migrate(db.pool);
  const previewId = randomUUID();
  const userId = randomUUID();
  await db.pool.query(
    `INSERT INTO preview_sessions (id, user_id, template, state, tier) VALUES ($1, $2, 'vite-react', 'ready', 'docker')`,
    [previewId, userId],
  );
  const hub = createSyncHub({
    pool: db.pool,
    pubsub: createMemoryPubSub(),
    state: createMemorySyncState(),
    log: { debug() {}, info() {}, warn() {}, error() {} },
    openChannel: () => openWebSocketChannel({ url: sandbox.url }),
  });
  const bridge = createRealtimeBridge({ previewId, userId, realtime: service, hub });
  await bridge.ready;
  // The transport as a SyncSession drives it (hello, then batches), timed to each `applied` ack.
  let onAck: ((f: ServerFrame) => void) | undefined;
  let t!: ReturnType<ReturnType<typeof realtimeTransport>>;
  await new Promise<void>((open, fail) => {
    t = realtimeTransport({ client: editor, previewId })({
      onOpen: open,
      onFrame: (f) => onAck?.(f),
      onClose: (code, reason) => fail(new Error(`closed ${code} ${reason}`)),
    });
  });
  t.send({ type: 'hello', lastAckedSeq: 0 });
  const acked = (seq: number, stage: 'applied' | 'persisted') =>
    new Promise<void>((r) => {
      onAck = (f) => f.type === 'ack' && f.seq === seq && f.stage === stage && r();
    });
  const rtMs: number[] = [];
  const directMs: number[] = [];
  try {
    let seq = 0;
    for (let i = 0; i < edits + 10; i++) {
      const p = acked(++seq, 'applied');
      const t0 = performance.now();
      t.send({
        type: 'batch',
        seq,
        ops: [{ op: 'put', path: 'src/App.jsx', content: `export default () => ${i};\n` }],
      });
      await p;
      if (i >= 10) rtMs.push(performance.now() - t0);
    }

    const p = acked(++seq, 'persisted');
    const t0 = performance.now();
    t.send({ type: 'batch', seq, ops: [{ op: 'put', path: 'big.txt', content: 'x'.repeat(bigKib * 1024) }] });
    await p;
    const bigMs = performance.now() - t0;

    const direct = await openWebSocketChannel({ url: sandbox.url });
    let resolveDirect: (() => void) | undefined;
    direct.onFrame((f) => f.type === 'ack' && resolveDirect?.());
    // Above every seq the bridge used: the sandbox acks a seq at or below its last without applying it.
    let dseq = Date.now() * 1000 + 1e9;
    for (let i = 0; i < edits + 10; i++) {
      const p = new Promise<void>((r) => (resolveDirect = r));
      const td = performance.now();
      direct.send({
        type: 'batch',
        seq: ++dseq,
        ops: [{ op: 'put', path: 'src/App.jsx', content: `export default () => ${i};\n`, encoding: 'utf8' }],
      });
      await p;
      if (i >= 10) directMs.push(performance.now() - td);
    }
    direct.close();
    return {
      edits,
      p50_ms: round1(percentile(rtMs, 50)),
      p99_ms: round1(percentile(rtMs, 99)),
      direct_p50_ms: round1(percentile(directMs, 50)),
      direct_p99_ms: round1(percentile(directMs, 99)),
      big_file_kib: bigKib,
      big_file_ms: round1(bigMs),
      broadcasts: rt.broadcasts(),
      violations: rt.violations.length,
    };
  } finally {
    t.close();
    await bridge.close();
    await hub.close();
    await db.drop();
    await editor.removeAllChannels();
    await service.removeAllChannels();
    await rt.close();
    await sandbox.close();
    await rm(dir, { recursive: true, force: true });
  }
}
