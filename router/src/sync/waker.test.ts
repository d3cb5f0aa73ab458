import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createWaker } from './waker.ts';

const log = { info() {}, warn() {}, error() {}, debug() {} };

describe('createWaker', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('checks at once, folds calls within the window into one trailing check, per preview', async () => {
    const calls: string[] = [];
    const waker = createWaker({ wake: async (id) => void calls.push(id), intervalMs: 1000, log });
    waker('a');
    waker('a');
    waker('a');
    waker('b');
    expect(calls).toEqual(['a', 'b']);
    await vi.advanceTimersByTimeAsync(1000);
    // One trailing check for 'a' (called again inside its window), none for 'b'.
    expect(calls).toEqual(['a', 'b', 'a']);
    await vi.advanceTimersByTimeAsync(5000);
    expect(calls).toEqual(['a', 'b', 'a']);
    waker('b');
    expect(calls).toEqual(['a', 'b', 'a', 'b']);
    waker.close();
  });

  it('logs a failed wake and keeps working', async () => {
    const warnings: unknown[] = [];
    let n = 0;
    const waker = createWaker({
      wake: async () => {
        n++;
        throw new Error('db down');
      },
      intervalMs: 10,
      log: { ...log, warn: (o: unknown) => void warnings.push(o) },
    });
    waker('a');
    await vi.advanceTimersByTimeAsync(20);
    waker('a');
    await vi.advanceTimersByTimeAsync(20);
    expect(n).toBe(2);
    expect(warnings).toHaveLength(2);
    waker.close();
  });

  it('close drops pending trailing checks', async () => {
    const calls: string[] = [];
    const waker = createWaker({ wake: async (id) => void calls.push(id), intervalMs: 1000, log });
    waker('a');
    waker('a');
    waker.close();
    await vi.advanceTimersByTimeAsync(2000);
    expect(calls).toEqual(['a']);
  });
});
