import { describe, expect, it } from 'vitest';
import { trackInflight } from './inflight.ts';

describe('trackInflight', () => {
  it('drained() waits for the requests being answered, and is immediate when there are none', async () => {
    let finish!: () => void;
    const t = trackInflight(
      (path: string) =>
        new Promise<string>((r) => {
          finish = () => r(`answered ${path}`);
        }),
    );
    expect(await t.drained(10)).toBe(true);
    const answer = t.fetch('/v1/previews');
    expect(t.size).toBe(1);
    let drained: boolean | undefined;
    const waiting = t.drained(60_000).then((ok) => {
      drained = ok;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(drained).toBeUndefined();
    finish();
    expect(await answer).toBe('answered /v1/previews');
    await waiting;
    expect(drained).toBe(true);
    expect(t.size).toBe(0);
  });

  it('gives up after the timeout with false; a handler that throws still counts down', async () => {
    const t = trackInflight(async (fail: boolean) => {
      if (fail) throw new Error('boom');
      return new Promise<never>(() => {});
    });
    void t.fetch(false);
    expect(await t.drained(30)).toBe(false);
    await expect(t.fetch(true)).rejects.toThrow('boom');
    expect(t.size).toBe(1);
  });
});
