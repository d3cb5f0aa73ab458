import { type FileBatch, type FileOp, LIMITS } from '@preview/tiers';
import type { StatusSocket } from './status.ts';

/** A batch waiting its turn: the socket it came on and when it arrived (`performance.now()`). */
export interface Queued {
  ws: StatusSocket;
  batch: FileBatch;
  t0: number;
}

/** Most batches in one run (each is checked on its own copy of the run's view of the project). */
export const MAX_RUN_BATCHES = 64;

/**
 * Takes the next run of batches off the front of `pending` (it is changed): the batches that waited
 * together, written as one. A run holds at least one batch, at most {@link MAX_RUN_BATCHES} and
 * `LIMITS.batchOps` operations and `LIMITS.batchBytes` of content (as one batch may), and a seq-0
 * batch (a claim's initial load, which has its own rules) only on its own.
 *
 * @example
 * const run = takeRun(pending); // [q1, q2, q3]: three edits that queued behind a slow write
 */
export function takeRun(pending: Queued[]): Queued[] {
  const first = pending.shift();
  if (!first) return [];
  const run = [first];
  if (first.batch.seq === 0) return run;
  let ops = first.batch.ops.length;
  let bytes = contentLength(first.batch.ops);
  for (
    let next = pending[0];
    next && next.batch.seq !== 0 && run.length < MAX_RUN_BATCHES;
    next = pending[0]
  ) {
    const n = contentLength(next.batch.ops);
    if (ops + next.batch.ops.length > LIMITS.batchOps || bytes + n > LIMITS.batchBytes) break;
    ops += next.batch.ops.length;
    bytes += n;
    run.push(pending.shift() as Queued);
  }
  return run;
}

/** Characters of content the puts carry (an upper bound of their decoded bytes). */
function contentLength(ops: readonly FileOp[]): number {
  let n = 0;
  for (const op of ops) if (op.op === 'put') n += op.content.length;
  return n;
}

/**
 * The ops of several batches, in order, as fewer writes with the same end result: within a stretch
 * of puts (no delete or rename between them) only the last put of each path is kept, at its own
 * place. Puts of different paths in such a stretch commute, so the tree ends the same; a delete or a
 * rename ends the stretch, as it may touch any path (a folder) and its order matters.
 *
 * @example
 * coalesceOps([[put('a', '1'), put('b', '1')], [put('a', '2')]]); // [put('b', '1'), put('a', '2')]
 */
export function coalesceOps(batches: ReadonlyArray<readonly FileOp[]>): FileOp[] {
  const out: Array<FileOp | undefined> = [];
  const lastPut = new Map<string, number>();
  for (const ops of batches)
    for (const op of ops) {
      if (op.op === 'put') {
        const before = lastPut.get(op.path);
        if (before !== undefined) out[before] = undefined;
        lastPut.set(op.path, out.length);
      } else lastPut.clear();
      out.push(op);
    }
  return out.filter((op): op is FileOp => op !== undefined);
}
