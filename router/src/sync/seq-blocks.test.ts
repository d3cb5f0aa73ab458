import { describe, expect, it } from 'vitest';
import { SeqBlocks } from './seq-blocks.ts';
import { createMemorySyncState } from './state.ts';

describe('SeqBlocks', () => {
  it('numbers from the first block above the floor, then the prefetched spare, always increasing', async () => {
    const state = createMemorySyncState();
    const asked: Array<[number, number]> = [];
    const seqs = new SeqBlocks({
      blockSize: 10,
      reserve: (n, floor) => {
        asked.push([n, floor]);
        return state.reserveSeqs('p', n, floor);
      },
    });
    expect(seqs.available).toBe(false);
    await seqs.start(40);
    const got: number[] = [];
    for (let i = 0; i < 25; i++) {
      if (!seqs.available) await seqs.refill();
      got.push(seqs.take());
    }
    for (let i = 1; i < got.length; i++) expect(got[i]).toBeGreaterThan(got[i - 1] as number);
    // A fresh counter starts well above the floor (FRESH_COUNTER_GAP), never at or below it.
    expect(got[0]).toBeGreaterThan(40);
    expect(new Set(got).size).toBe(25);
    // Prefetch asked for the next block above the end of the current one.
    expect(asked[1]?.[1]).toBe((got[0] as number) + 9);
  });

  it('has one reservation in flight at a time and refuses to number past its blocks', async () => {
    let calls = 0;
    let release: (n: number) => void = () => {};
    const seqs = new SeqBlocks({
      blockSize: 2,
      reserve: () => {
        calls++;
        return new Promise<number>((r) => {
          release = r;
        });
      },
    });
    const started = seqs.start(0);
    release(100);
    await started;
    expect(seqs.take()).toBe(100);
    // Running low (below a fifth of the block) starts a prefetch; a refill joins it.
    const r1 = seqs.refill();
    const r2 = seqs.refill();
    expect(calls).toBe(2);
    expect(seqs.take()).toBe(101);
    expect(seqs.available).toBe(false);
    expect(() => seqs.take()).toThrow(/no seq available/);
    release(500);
    await Promise.all([r1, r2]);
    expect(seqs.take()).toBe(500);
  });

  it('rejects a block size that is not a positive integer', () => {
    expect(() => new SeqBlocks({ blockSize: 0, reserve: async () => 1 })).toThrow(/blockSize/);
  });
});
