import { type FileBatch, type FileOp, LIMITS } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { coalesceOps, MAX_RUN_BATCHES, type Queued, takeRun } from './batch-runs.ts';

const put = (path: string, content = 'x'): FileOp => ({ op: 'put', path, content, encoding: 'utf8' });
const del = (path: string): FileOp => ({ op: 'delete', path });
const mv = (from: string, to: string): FileOp => ({ op: 'rename', from, to });
const ws = { readyState: 1, send() {} };
const queued = (seq: number, ops: FileOp[] = [put('a')]): Queued => ({
  ws,
  batch: { type: 'batch', seq, ops } as FileBatch,
  t0: 0,
});

describe('coalesceOps', () => {
  it('keeps only the last put of a path, at its own place', () => {
    expect(coalesceOps([[put('a', '1'), put('b', '1')], [put('a', '2')], [put('c'), put('a', '3')]])).toEqual(
      [put('b', '1'), put('c'), put('a', '3')],
    );
  });

  it('does not move a put across a delete or a rename', () => {
    const ops = [
      [put('a', '1')],
      [del('a')],
      [put('a', '2')],
      [mv('a', 'b')],
      [put('a', '3'), put('a', '4')],
    ];
    expect(coalesceOps(ops)).toEqual([put('a', '1'), del('a'), put('a', '2'), mv('a', 'b'), put('a', '4')]);
  });
});

describe('takeRun', () => {
  it('takes every batch that waited, in order', () => {
    const pending = [queued(1), queued(2), queued(3)];
    expect(takeRun(pending).map((q) => q.batch.seq)).toEqual([1, 2, 3]);
    expect(pending).toEqual([]);
    expect(takeRun(pending)).toEqual([]);
  });

  it('takes a seq-0 batch (a claim load) on its own', () => {
    const pending = [queued(0), queued(1), queued(2)];
    expect(takeRun(pending).map((q) => q.batch.seq)).toEqual([0]);
    expect(takeRun(pending).map((q) => q.batch.seq)).toEqual([1, 2]);
  });

  it('stops at the limits of one batch and at MAX_RUN_BATCHES', () => {
    const half = Array.from({ length: LIMITS.batchOps / 2 }, (_, i) => put(`f${i}`));
    const big = [queued(1, half), queued(2, half), queued(3, [put('x')])];
    expect(takeRun(big).map((q) => q.batch.seq)).toEqual([1, 2]);
    const many = Array.from({ length: MAX_RUN_BATCHES + 5 }, (_, i) => queued(i + 1));
    expect(takeRun(many)).toHaveLength(MAX_RUN_BATCHES);
    expect(many).toHaveLength(5);
  });
});
