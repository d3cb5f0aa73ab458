import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeEnvelopes, type FileBatch, type ServerFrame } from '@preview/tiers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startDirectorySandbox } from '../sync/testing/dir-sandbox.ts';
import { openWebSocketChannel } from '../sync/ws-channel.ts';
import { type BridgeChannelLike, createRealtimeBridge, type RealtimeBridge } from './bridge.ts';
import { createRealtimeBridgeSet } from './bridge-set.ts';

/**
 * The bridge's sequencing rules, driven frame by frame. The channel here is an in-process stand-in
 * for the `RealtimeChannel` interface (the real supabase-js client through the Realtime protocol is
 * covered in browser-runtime's realtime-transport.int.test.ts); the sandbox side is real: the
 * directory test sandbox over a WebSocket SyncChannel.
 */

interface Wire {
  channel: BridgeChannelLike;
  /** Delivers a c2s broadcast payload to the bridge. */
  deliver(payload: unknown): void;
  /** Frames the bridge broadcast to `to` (or to everyone). */
  framesTo(to: string): ServerFrame[];
}

function wire(): Wire {
  let handler: ((m: { payload?: unknown }) => void) | undefined;
  const out: Array<{ to?: string; frame: ServerFrame }> = [];
  return {
    channel: {
      on(_type, filter, cb) {
        if (filter.event === 'c2s') handler = cb;
        return this;
      },
      subscribe(cb) {
        queueMicrotask(() => cb?.('SUBSCRIBED'));
        return this;
      },
      async send(args) {
        const p = args.payload as { to?: string; frame?: ServerFrame };
        if (p.frame) out.push({ ...(p.to ? { to: p.to } : {}), frame: p.frame });
        return 'ok';
      },
      async unsubscribe() {
        return 'ok';
      },
    },
    deliver: (payload) => handler?.({ payload }),
    framesTo: (to) => out.filter((o) => o.to === to || o.to === undefined).map((o) => o.frame),
  };
}

let dir: string;
let sandbox: Awaited<ReturnType<typeof startDirectorySandbox>>;
let bridge: RealtimeBridge | undefined;
let n = 0;

async function send(w: Wire, from: string, frame: object) {
  for (const env of await encodeEnvelopes(frame, { from, id: `m${++n}`, maxMessageBytes: 256 * 1024 }))
    w.deliver(env);
}

const put = (seq: number, path: string, content: string): FileBatch => ({
  type: 'batch',
  seq,
  ops: [{ op: 'put', path, content, encoding: 'utf8' }],
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rt-bridge-'));
  sandbox = await startDirectorySandbox({ dir });
});
afterEach(async () => {
  await bridge?.close();
  bridge = undefined;
  await sandbox.close();
  await rm(dir, { recursive: true, force: true });
});

function start(w: Wire, extra: Partial<Parameters<typeof createRealtimeBridge>[0]> = {}) {
  bridge = createRealtimeBridge({
    previewId: 'p1',
    joinChannel: () => w.channel,
    openChannel: () => openWebSocketChannel({ url: sandbox.url }),
    ...extra,
  });
  return bridge.ready;
}

describe('realtime bridge sequencing', () => {
  it('holds a batch that arrives before an earlier seq and applies both in seq order', async () => {
    const w = wire();
    await start(w);
    await send(w, 'ed', { type: 'hello', lastAckedSeq: 0 });
    await send(w, 'ed', put(2, 'a.txt', 'second'));
    await send(w, 'ed', put(1, 'a.txt', 'first'));
    await expect
      .poll(() => w.framesTo('ed').find((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 2))
      .toBeDefined();
    expect((await sandbox.files()).get('a.txt')?.toString()).toBe('second');
    // A replay of both is acked again, not applied again.
    await send(w, 'ed', put(1, 'a.txt', 'first'));
    await expect
      .poll(() => w.framesTo('ed').filter((f) => f.type === 'ack' && f.stage === 'persisted').length)
      .toBeGreaterThanOrEqual(2);
    expect((await sandbox.files()).get('a.txt')?.toString()).toBe('second');
  });

  it('tells an editor to resync when a seq stays missing, or when it never said hello', async () => {
    const w = wire();
    await start(w, { maxHeldBatches: 2 });
    await send(w, 'stranger', put(1, 'x.txt', 'x'));
    await send(w, 'ed', { type: 'hello', lastAckedSeq: 0 });
    for (const seq of [2, 3, 4]) await send(w, 'ed', put(seq, `f${seq}.txt`, 'x'));
    await expect
      .poll(() => w.framesTo('stranger').find((f) => f.type === 'error'))
      .toMatchObject({ code: 'resync' });
    await expect
      .poll(() => w.framesTo('ed').find((f) => f.type === 'error'))
      .toMatchObject({ code: 'resync' });
    expect((await sandbox.files()).size).toBe(0);
  });

  it('acks persisted only after persist() resolves, and resyncs when it fails', async () => {
    const w = wire();
    const persisted: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let fail = false;
    await start(w, {
      persist: async (_id, batch) => {
        await gate;
        if (fail) throw new Error('db down');
        persisted.push(batch.seq);
      },
    });
    await send(w, 'ed', { type: 'hello', lastAckedSeq: 0 });
    await send(w, 'ed', put(1, 'a.txt', 'a'));
    await expect
      .poll(() => w.framesTo('ed').find((f) => f.type === 'ack' && f.stage === 'applied'))
      .toBeDefined();
    expect(w.framesTo('ed').some((f) => f.type === 'ack' && f.stage === 'persisted')).toBe(false);
    release();
    await expect
      .poll(() => w.framesTo('ed').find((f) => f.type === 'ack' && f.stage === 'persisted'))
      .toMatchObject({ seq: 1 });
    expect(persisted.length).toBe(1);
    fail = true;
    await send(w, 'ed', put(2, 'b.txt', 'b'));
    await expect
      .poll(() => w.framesTo('ed').find((f) => f.type === 'error'))
      .toMatchObject({ code: 'resync' });
  });

  it('refuses an envelope that is not one, naming the field', async () => {
    const w = wire();
    await start(w);
    w.deliver({ v: 1, from: 'ed', id: 'z', part: 0, parts: 2, bytes: 10, sha256: 'nothex', data: 'x' });
    await expect
      .poll(() => w.framesTo('ed').find((f) => f.type === 'error'))
      .toMatchObject({ code: 'invalid_frame' });
    expect(() =>
      createRealtimeBridge({
        previewId: '../x',
        joinChannel: () => w.channel,
        openChannel: async () => Promise.reject(),
      }),
    ).toThrow(/options.previewId/);
  });

  it('tracks a bounded number of editors, evicting the least recently heard', async () => {
    const w = wire();
    await start(w, { maxEditors: 2 });
    await send(w, 'e1', { type: 'hello', lastAckedSeq: 0 });
    await send(w, 'e2', { type: 'hello', lastAckedSeq: 0 });
    await send(w, 'e1', put(1, 'one.txt', '1'));
    await send(w, 'e3', { type: 'hello', lastAckedSeq: 0 });
    await expect
      .poll(() => w.framesTo('e2').find((f) => f.type === 'error'))
      .toMatchObject({ code: 'resync' });
    expect(w.framesTo('e1').some((f) => f.type === 'error')).toBe(false);
    expect(bridge?.editors()).toBe(2);
  });

  it('a bridge set runs one bridge per preview and stops repeat-safely', async () => {
    const topics: string[] = [];
    const set = createRealtimeBridgeSet({
      joinChannel: (topic) => {
        topics.push(topic);
        return wire().channel;
      },
      openChannel: () => openWebSocketChannel({ url: sandbox.url }),
    });
    const a = await set.ensure('a1');
    expect(await set.ensure('a1')).toBe(a);
    await set.ensure('b2');
    expect(set.running().sort()).toEqual(['a1', 'b2']);
    expect(topics).toEqual(['preview:a1', 'preview:b2']);
    expect(await set.stop('a1')).toBe(true);
    expect(await set.stop('a1')).toBe(false);
    await set.close();
    expect(set.running()).toEqual([]);
  });
});
