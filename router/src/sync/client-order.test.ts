import { describe, expect, it } from 'vitest';
import { type ClientBatch, ClientOrder } from './client-order.ts';

const b = (seq: number): ClientBatch => ({ client: 'c', seq, ops: [{ op: 'delete', path: `f${seq}` }] });

/** Processes like the owner: a new batch raises `sent`. */
function run(order: ClientOrder, batches: ClientBatch[], now = 0) {
  const seen: number[] = [];
  for (const x of batches)
    order.admit(x, now, (y) => {
      seen.push(y.seq);
      if (y.seq > order.sent) order.sent = y.seq;
    });
  return seen;
}

describe('ClientOrder', () => {
  it('starts from the watermarks: applied is at least persisted, nothing enqueued above persisted', () => {
    const o = new ClientOrder({ applied: 2, persisted: 5 });
    expect([o.sent, o.applied, o.enqueued, o.persisted]).toEqual([5, 5, 5, 5]);
  });

  it('processes in seq order, holding a batch that arrives ahead of a gap until the gap fills', () => {
    const o = new ClientOrder({ applied: 0, persisted: 0 });
    expect(run(o, [b(1), b(3), b(4)], 100)).toEqual([1]);
    expect(o.held.size).toBe(2);
    expect(o.gapSince).toBe(100);
    expect(run(o, [b(2)], 200)).toEqual([2, 3, 4]);
    expect(o.held.size).toBe(0);
    expect(o.gapSince).toBe(0);
  });

  it('hands duplicates on (the owner re-acks them) and drops held ones the order has passed', () => {
    const o = new ClientOrder({ applied: 3, persisted: 3 });
    expect(run(o, [b(2), b(3)])).toEqual([2, 3]);
    expect(o.sent).toBe(3);
  });

  it('reports a gap that lasted longer than gapMs once per gapMs', () => {
    const o = new ClientOrder({ applied: 0, persisted: 0 });
    run(o, [b(5)], 1000);
    expect(o.stuck(1500, 1000)).toBe(false);
    expect(o.stuck(2001, 1000)).toBe(true);
    expect(o.stuck(2500, 1000)).toBe(false);
    expect(o.stuck(3002, 1000)).toBe(true);
  });

  it('only ever raises its marks; enqueue says whether the seq was new', () => {
    const o = new ClientOrder({ applied: 0, persisted: 0 });
    o.raiseApplied(4);
    o.raiseApplied(2);
    expect(o.applied).toBe(4);
    expect(o.enqueue(3)).toBe(true);
    expect(o.enqueue(3)).toBe(false);
    expect(o.enqueue(1)).toBe(false);
    o.raisePersisted(3);
    o.raisePersisted(1);
    expect(o.persisted).toBe(3);
  });

  it('for the HTTP client (increasing), holds nothing for a gap and hands a stale seq on to be refused', () => {
    const o = new ClientOrder({ applied: 0, persisted: 0, increasing: true });
    expect(run(o, [b(5), b(9)])).toEqual([5, 9]);
    expect(o.held.size).toBe(0);
    expect(run(o, [b(3)])).toEqual([3]);
    expect(o.sent).toBe(9);
  });
});
