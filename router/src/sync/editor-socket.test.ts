import { CloseCodes, LIMITS } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { EditorConnection, type SyncSocket } from './editor-socket.ts';

/** An in-memory socket: records what the connection sends and how it closed. */
function memorySocket() {
  const sent: Array<Record<string, unknown>> = [];
  const s = {
    sent,
    closed: undefined as { code: number; reason: string } | undefined,
    bufferedAmount: 0,
    send(t: string) {
      sent.push(JSON.parse(t) as Record<string, unknown>);
    },
    close(code: number, reason: string) {
      s.closed = { code, reason };
    },
    onMessage() {},
    onClose() {},
  };
  return s satisfies SyncSocket;
}

const limits = { maxBufferedBytes: 1000, maxPendingBatches: 3 };
const batch = (seq: number, path = 'a.txt') =>
  JSON.stringify({ type: 'batch', seq, ops: [{ op: 'put', path, content: 'x' }] });

function ready(s = memorySocket()) {
  const e = new EditorConnection(s, limits);
  e.hello(JSON.stringify({ type: 'hello', clientId: 'c1', lastAckedSeq: 0 }));
  e.open();
  return { s, e };
}

describe('EditorConnection', () => {
  it('takes the client id from the hello and keeps frames that came early until it is answered', () => {
    const s = memorySocket();
    const e = new EditorConnection(s, limits);
    expect(e.hello(JSON.stringify({ type: 'hello', clientId: 'c9', lastAckedSeq: 4 }))).toBe(4);
    expect(e.clientId).toBe('c9');
    expect(e.receive(batch(1), 10)).toBeUndefined();
    expect(e.open().map((f) => f.seq)).toEqual([1]);
  });

  it('reads a first frame that is not a hello as an anonymous client frame', () => {
    const e = new EditorConnection(memorySocket(), limits);
    expect(e.hello(batch(1))).toBe(0);
    expect(e.clientId).toMatch(/^anon-/);
    expect(e.open().map((f) => f.seq)).toEqual([1]);
  });

  it('forwards batches with increasing seqs, refuses a seq that does not increase', () => {
    const { s, e } = ready();
    expect(e.receive(batch(1), 10)?.seq).toBe(1);
    expect(e.receive(batch(1), 10)).toBeUndefined();
    expect(s.sent.at(-1)).toMatchObject({ type: 'error', code: 'seq_out_of_order', seq: 1 });
    expect(e.pending.map((f) => f.seq)).toEqual([1]);
  });

  it('answers a refused batch with its error and keeps its place in the order (ops null)', () => {
    const { s, e } = ready();
    expect(e.receive(batch(1, '../x'), 10)).toEqual({ seq: 1, ops: null });
    expect(s.sent.at(-1)).toMatchObject({ type: 'error', code: 'invalid_path', seq: 1 });
    expect(e.receive('{not json', 9)).toBeUndefined();
    expect(s.sent.at(-1)).toMatchObject({ type: 'error', code: 'malformed_frame' });
    expect(e.receive(undefined, 4)).toBeUndefined();
    expect(s.sent.at(-1)).toMatchObject({ type: 'error', code: 'invalid_frame' });
  });

  it('answers ping, refuses a second hello, closes on a frame over the limit', () => {
    const { s, e } = ready();
    e.receive(JSON.stringify({ type: 'ping', t: 7 }), 10);
    expect(s.sent.at(-1)).toEqual({ type: 'pong', t: 7 });
    e.receive(JSON.stringify({ type: 'hello' }), 10);
    expect(s.sent.at(-1)).toMatchObject({ type: 'error', code: 'invalid_frame' });
    e.receive(batch(2), LIMITS.frameBytes + 1);
    expect(s.closed?.code).toBe(CloseCodes.tooBig);
  });

  it('drops pending batches up to a persisted ack, closes when too many are pending or the socket backs up', () => {
    const { s, e } = ready();
    for (const n of [1, 2, 3]) e.receive(batch(n), 10);
    e.send({ type: 'ack', seq: 2, stage: 'persisted' });
    expect(e.pending.map((f) => f.seq)).toEqual([3]);
    e.receive(batch(4), 10);
    e.receive(batch(5), 10);
    e.receive(batch(6), 10);
    expect(s.closed?.code).toBe(CloseCodes.overloaded);

    const slow = ready();
    slow.s.bufferedAmount = 5000;
    slow.e.send({ type: 'ack', seq: 1, stage: 'applied' });
    expect(slow.s.closed?.code).toBe(CloseCodes.slowConsumer);
    expect(slow.s.sent).toEqual([]);
  });
});
