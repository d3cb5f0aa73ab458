import { describe, expect, it } from 'vitest';
import {
  ChunkAssembler,
  type ChunkEnvelope,
  ENVELOPE_HEADROOM_BYTES,
  Envelope,
  encodeEnvelopes,
} from './broadcast-chunks.ts';
import { utf8Length } from './paths.ts';

const MAX = 4096;

async function chunks(frame: object, max = MAX) {
  return (await encodeEnvelopes(frame, { from: 'ed', id: 'm1', maxMessageBytes: max })) as ChunkEnvelope[];
}

describe('encodeEnvelopes / ChunkAssembler', () => {
  it('sends a small frame whole', async () => {
    const envs = await encodeEnvelopes(
      { type: 'ping' },
      { from: 'ed', to: 'br', id: 'x', maxMessageBytes: MAX },
    );
    expect(envs).toEqual([{ v: 1, from: 'ed', to: 'br', id: 'x', frame: { type: 'ping' } }]);
  });

  it('cuts a large frame into envelopes under the cap, never splitting a surrogate pair, and reassembles it', async () => {
    const content = '😀"\\\n\u0001é€abc'.repeat(2000);
    const frame = { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content }] };
    const envs = await chunks(frame);
    expect(envs.length).toBeGreaterThan(10);
    for (const e of envs) {
      expect(Envelope.safeParse(e).success).toBe(true);
      expect(utf8Length(JSON.stringify(e))).toBeLessThanOrEqual(MAX - ENVELOPE_HEADROOM_BYTES);
      const last = e.data.charCodeAt(e.data.length - 1);
      expect(last >= 0xd800 && last <= 0xdbff).toBe(false);
    }
    const a = new ChunkAssembler();
    // Out of order and with a duplicate.
    const order = [...envs].reverse();
    order.splice(1, 0, envs[envs.length - 1] as ChunkEnvelope);
    let out: Awaited<ReturnType<ChunkAssembler['accept']>> | undefined;
    for (const e of order) out = await a.accept(e);
    expect(out).toMatchObject({ kind: 'frame', from: 'ed', id: 'm1' });
    expect(JSON.parse((out as { text: string }).text)).toEqual(frame);
    expect(a.bufferedBytes).toBe(0);
  });

  it('refuses a tampered chunk (sha256) and inconsistent headers', async () => {
    const envs = await chunks({ type: 'batch', content: 'x'.repeat(20_000) });
    const a = new ChunkAssembler();
    const bad = envs.map((e, i) => (i === 2 ? { ...e, data: `y${e.data.slice(1)}` } : e));
    const results = [];
    for (const e of bad) results.push(await a.accept(e));
    expect(results.at(-1)).toMatchObject({ kind: 'error', code: 'invalid_frame', message: /sha256/ });

    const b = new ChunkAssembler();
    await b.accept(envs[0] as ChunkEnvelope);
    expect(await b.accept({ ...(envs[1] as ChunkEnvelope), parts: 99 })).toMatchObject({
      kind: 'error',
      code: 'invalid_frame',
    });
    expect(b.pending).toBe(0);
  });

  it('bounds what it buffers: frame size, total bytes, pending frames, age', async () => {
    const envs = await chunks({ content: 'x'.repeat(20_000) });
    const small = new ChunkAssembler({ maxFrameBytes: 10_000 });
    expect(await small.accept(envs[0] as ChunkEnvelope)).toMatchObject({ kind: 'error', code: 'too_large' });

    const tight = new ChunkAssembler({ maxBufferedBytes: 5000 });
    const r = [];
    for (const e of envs.slice(0, 2)) r.push(await tight.accept(e));
    expect(r).toMatchObject([
      { kind: 'pending' },
      { kind: 'error', code: 'too_large', message: /buffer full/ },
    ]);
    expect(tight.bufferedBytes).toBe(0);

    const few = new ChunkAssembler({ maxPending: 1 });
    await few.accept(envs[0] as ChunkEnvelope);
    expect(await few.accept({ ...(envs[0] as ChunkEnvelope), id: 'other' })).toMatchObject({
      code: 'too_large',
    });

    let t = 0;
    const aging = new ChunkAssembler({ timeoutMs: 1000, now: () => t });
    await aging.accept(envs[0] as ChunkEnvelope);
    expect(aging.expire()).toEqual([]);
    t = 1000;
    expect(aging.expire()).toEqual([{ from: 'ed', id: 'm1' }]);
    expect(aging.pending).toBe(0);
    expect(() => new ChunkAssembler({ timeoutMs: 0 })).toThrow(/options.timeoutMs/);
  });
});
