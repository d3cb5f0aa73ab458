import { describe, expect, it } from 'vitest';
import { LogRing } from './log.ts';

describe('LogRing', () => {
  it('keeps the last lines without colour codes', () => {
    const ring = new LogRing(2);
    ring.push('one\n\u001b[32mtwo\u001b[39m\nthree\n');
    expect(ring.tail(5)).toEqual(['two', 'three']);
  });

  it('takes an Error (as Vite hands its logger one) as its stack, and other values as strings', () => {
    const ring = new LogRing();
    ring.push(new Error('watcher failed'));
    ring.push(42);
    const lines = ring.tail(50);
    expect(lines[0]).toBe('Error: watcher failed');
    expect(lines.some((l) => l.includes('log.test.ts'))).toBe(true);
    expect(lines.at(-1)).toBe('42');
  });
});
