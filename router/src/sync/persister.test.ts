import type { FileOp } from '@preview/tiers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SyncStore } from '../store/project-files.ts';
import { createPersister } from './persister.ts';

const put = (path: string): FileOp => ({ op: 'put', path, content: path, encoding: 'utf8' });

/**
 * A store whose writes are recorded (each as its last seq and the client marks it moves), failing
 * the first `failFirst` of them.
 */
function recordingStore(failFirst = 0) {
  const writes: Array<[number, string]> = [];
  let calls = 0;
  const store = {
    write: async (
      _id: string,
      _steps: unknown,
      marks: { lastSeq?: number; clients: Map<string, number> },
    ) => {
      calls++;
      if (calls <= failFirst) throw new Error('postgres is down');
      writes.push([marks.lastSeq ?? 0, [...marks.clients].map(([c, n]) => `${c}:${n}`).join(',')]);
    },
  } as unknown as SyncStore;
  return { store, writes };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('persister coalescing windows', () => {
  it("flushes within each entry's own delay: a short one brings a long one's flush forward", async () => {
    const { store, writes } = recordingStore();
    const p = createPersister({ store, previewId: 'p', delayMs: 5, onPersisted() {}, onError() {} });
    p.enqueue({ seq: 1, ops: [put('a')], clientId: 'e', clientSeq: 1 }, 50);
    await vi.advanceTimersByTimeAsync(49);
    expect(writes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(writes).toEqual([[1, 'e:1']]);

    p.enqueue({ seq: 2, ops: [put('b')], clientId: 'e', clientSeq: 2 }, 50);
    await vi.advanceTimersByTimeAsync(10);
    p.enqueue({ seq: 3, ops: [put('c')], clientId: 'http', clientSeq: 1 }); // the default 5 ms
    await vi.advanceTimersByTimeAsync(5);
    expect(writes).toEqual([
      [1, 'e:1'],
      [3, 'e:2,http:1'],
    ]);
    await vi.advanceTimersByTimeAsync(100);
    expect(writes).toHaveLength(2);
  });

  it('entries that arrive during a flush go in the next one, after the shortest of their delays', async () => {
    let release!: () => void;
    const writes: number[] = [];
    const store = {
      write: async (_id: string, _steps: unknown, marks: { lastSeq?: number }) => {
        if (writes.length === 0) await new Promise<void>((r) => (release = r));
        writes.push(marks.lastSeq ?? 0);
      },
    } as unknown as SyncStore;
    const p = createPersister({ store, previewId: 'p', delayMs: 5, onPersisted() {}, onError() {} });
    p.enqueue({ seq: 1, ops: [put('a')], clientId: 'e', clientSeq: 1 });
    await vi.advanceTimersByTimeAsync(5); // the first flush starts and waits in write
    p.enqueue({ seq: 2, ops: [put('b')], clientId: 'e', clientSeq: 2 }, 50);
    p.enqueue({ seq: 3, ops: [put('c')], clientId: 'e', clientSeq: 3 }, 20);
    release();
    await vi.advanceTimersByTimeAsync(19);
    expect(writes).toEqual([1]);
    await vi.advanceTimersByTimeAsync(1);
    expect(writes).toEqual([1, 3]);
  });

  it("a failed flush's backoff is not cut short by a new entry's short delay", async () => {
    const { store, writes } = recordingStore(1);
    const errors: unknown[] = [];
    const p = createPersister({
      store,
      previewId: 'p',
      delayMs: 5,
      onPersisted() {},
      onError: (e) => errors.push(e),
    });
    p.enqueue({ seq: 1, ops: [put('a')], clientId: 'e', clientSeq: 1 });
    await vi.advanceTimersByTimeAsync(5);
    expect(errors).toHaveLength(1); // retried after 100 ms (50 × 2¹)
    p.enqueue({ seq: 2, ops: [put('b')], clientId: 'http', clientSeq: 1 }, 0);
    await vi.advanceTimersByTimeAsync(99);
    expect(writes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(writes).toEqual([[2, 'e:1,http:1']]);
    await p.drained();
  });
});
