import { describe, expect, it } from 'vitest';
import { InflightBatches, LEASE_SAFETY, OwnerFence } from './owner-fence.ts';

function clock(t = 1000) {
  return {
    t,
    now() {
      return this.t;
    },
  };
}

describe('OwnerFence', () => {
  it('is valid only before t0 + leaseMs * LEASE_SAFETY, measured from when the request was sent', () => {
    const c = clock();
    const f = new OwnerFence({ leaseMs: 1000, clock: c, renew: async () => true, onLost() {} });
    expect(f.valid()).toBe(false);
    f.held(1000);
    c.t = 1000 + 1000 * LEASE_SAFETY - 1;
    expect(f.valid()).toBe(true);
    c.t = 1000 + 1000 * LEASE_SAFETY;
    expect(f.valid()).toBe(false);
  });

  it('renews once for concurrent callers, extends from the send time, and reports a lost lease', async () => {
    const c = clock();
    let calls = 0;
    let ok = true;
    let lost = 0;
    const f = new OwnerFence({
      leaseMs: 1000,
      clock: c,
      renew: async () => {
        calls++;
        c.t += 100; // the round trip takes time; the fence counts from the send
        return ok;
      },
      onLost: () => lost++,
    });
    expect(await Promise.all([f.renewNow(), f.renewNow()])).toEqual([true, true]);
    expect(calls).toBe(1);
    c.t = 1000 + 1000 * LEASE_SAFETY - 1;
    expect(f.valid()).toBe(true);
    c.t = 1000 + 1000 * LEASE_SAFETY;
    expect(f.valid()).toBe(false);
    ok = false;
    expect(await f.renewNow()).toBe(false);
    expect(lost).toBe(1);
  });
});

describe('InflightBatches', () => {
  const inf = (seq: number, clientSeq: number) => ({ seq, client: 'c', clientSeq, ops: [] });

  it('acks everything up to a seq in send order and remembers their origin for late hmr events', () => {
    const b = new InflightBatches({ maxRecent: 2 });
    b.add(inf(10, 1));
    b.add(inf(11, 2));
    b.add(inf(12, 3));
    expect(b.ackUpTo(11).map((x) => x.clientSeq)).toEqual([1, 2]);
    expect(b.size).toBe(1);
    expect(b.originOf(10)).toEqual({ client: 'c', clientSeq: 1 });
    expect(b.originOf(12)).toMatchObject({ client: 'c', clientSeq: 3 });
    b.ackUpTo(12);
    // Only the last `maxRecent` acked origins are kept.
    expect(b.originOf(10)).toBeUndefined();
    expect(b.originOf(12)).toEqual({ client: 'c', clientSeq: 3 });
  });

  it('takes a refused batch out of flight', () => {
    const b = new InflightBatches();
    b.add(inf(5, 1));
    expect(b.refuse(5)?.clientSeq).toBe(1);
    expect(b.refuse(5)).toBeUndefined();
    expect(b.size).toBe(0);
  });
});
