import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EditDebouncer } from './debounce.ts';

describe('EditDebouncer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends the first edit after a quiet spell at once, gathers the burst, sends its last text on the pause', () => {
    const sent: string[] = [];
    const d = new EditDebouncer(150, (p, t) => sent.push(`${p}=${t}`));
    d.edit('a.js', '1', 1000);
    expect(sent).toEqual(['a.js=1']);
    d.edit('a.js', '12', 1050);
    d.edit('a.js', '123', 1100);
    d.edit('b.js', 'x', 1120);
    expect(sent).toEqual(['a.js=1']);
    expect(d.pending).toBe(2);
    vi.advanceTimersByTime(149);
    expect(sent).toEqual(['a.js=1']);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual(['a.js=1', 'a.js=123', 'b.js=x']);
    // Quiet again: the next edit goes out at once.
    d.edit('a.js', '1234', 2000);
    expect(sent.at(-1)).toBe('a.js=1234');
  });

  it('flush sends what is gathered now; cancel drops it', () => {
    const sent: string[] = [];
    const d = new EditDebouncer(150, (p, t) => sent.push(`${p}=${t}`));
    d.edit('a.js', '1', 0);
    d.edit('a.js', '2', 10);
    d.flush();
    expect(sent).toEqual(['a.js=1', 'a.js=2']);
    d.edit('a.js', '3', 20);
    d.cancel();
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual(['a.js=1', 'a.js=2']);
  });

  it('refuses a negative pause, naming the field', () => {
    expect(() => new EditDebouncer(-1, () => {})).toThrow(/ms: must be a finite number/);
  });
});
