import { describe, expect, it } from 'vitest';
import { pollDelays } from './daemon-client.ts';

const take = (g: Generator<number>, n: number) => Array.from({ length: n }, () => g.next().value);

describe('pollDelays', () => {
  it('waits 1.5 times longer each time, up to the cap', () => {
    expect(take(pollDelays(50, 500), 9)).toEqual([50, 75, 112.5, 168.75, 253.125, 379.6875, 500, 500, 500]);
  });

  it('caps a claim at 40 ms by default, and never goes below a first wait above that', () => {
    expect(take(pollDelays(10), 6)).toEqual([10, 15, 22.5, 33.75, 40, 40]);
    // A first wait above 40 ms is kept (it was cut down to 40 ms after the first poll).
    expect(take(pollDelays(250), 3)).toEqual([250, 250, 250]);
  });
});
