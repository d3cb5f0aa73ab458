import { describe, expect, it } from 'vitest';
import { InflightRequests } from './inflight.ts';

describe('InflightRequests', () => {
  it('is drained at once for a port with nothing in flight', async () => {
    await new InflightRequests().drained(3000, 60_000);
  });

  it('counts per port and resolves drained once the last request to that port is done', async () => {
    const inflight = new InflightRequests();
    const a1 = inflight.begin(3000);
    const a2 = inflight.begin(3000);
    const b = inflight.begin(3001);
    expect([inflight.count(3000), inflight.count(3001)]).toEqual([2, 1]);
    let drained = false;
    const waiting = inflight.drained(3000, 60_000).then(() => {
      drained = true;
    });
    a1();
    await Promise.resolve();
    expect(drained).toBe(false);
    a2();
    await waiting;
    expect(drained).toBe(true);
    expect(inflight.count(3000)).toBe(0);
    expect(inflight.count(3001)).toBe(1);
    b();
  });

  it('gives up waiting after maxMs', async () => {
    const inflight = new InflightRequests();
    inflight.begin(3000);
    await inflight.drained(3000, 5);
    expect(inflight.count(3000)).toBe(1);
  });
});
