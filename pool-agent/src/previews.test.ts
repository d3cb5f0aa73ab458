import { describe, expect, it } from 'vitest';
import { linkTo } from './daemon-client.ts';
import { type PreviewRecord, PreviewTable } from './previews.ts';
import type { SandboxInfo } from './runtime/types.ts';

const box = (id: string): SandboxInfo => ({
  id,
  template: 'vite-vanilla',
  previewId: undefined,
  pool: undefined,
  state: 'running',
  // Never connected: these tests only read and move state.
  upstream: 'http://127.0.0.1:9',
  daemonToken: 'd'.repeat(24),
});
const record = (id: string, boxId = `box-${id}`): PreviewRecord => {
  const b = box(boxId);
  return { id, box: b, link: linkTo(b), state: { kind: 'starting' }, relays: new Set() };
};

describe('PreviewTable', () => {
  it('finds a preview by id and by sandbox; remove is repeat-safe', () => {
    const t = new PreviewTable();
    const p = t.add(record('p1'));
    expect(t.size).toBe(1);
    expect(t.find('p1')).toBe(p);
    expect(t.bySandbox('box-p1')).toBe(p);
    expect(t.ids()).toEqual(['p1']);
    expect(t.remove('p1')).toBe(p);
    expect(t.remove('p1')).toBeUndefined();
    expect(t.bySandbox('box-p1')).toBeUndefined();
    expect(() => t.get('p1')).toThrow(expect.objectContaining({ code: 'preview_not_found' }));
  });

  it('routes only to previews that may take traffic, naming why not', () => {
    const t = new PreviewTable();
    const p = t.add(record('p1'));
    expect(t.routable('p1')).toBe(p);
    p.state = { kind: 'suspended' };
    expect(() => t.routable('p1')).toThrow(expect.objectContaining({ code: 'preview_suspended' }));
    p.state = { kind: 'ready' };
    expect(t.fail(p, 'out of memory: killed')).toBe(true);
    expect(() => t.routable('p1')).toThrow(/failed: out of memory: killed/);
    expect(() => t.routable('p1')).toThrow(expect.objectContaining({ code: 'preview_failed' }));
  });

  it('keeps the first failure reason', () => {
    const t = new PreviewTable();
    const p = t.add(record('p1'));
    expect(t.fail(p, 'exited with code 137')).toBe(true);
    expect(t.fail(p, 'exited with code 1')).toBe(false);
    expect(p.state).toEqual({ kind: 'failed', reason: 'exited with code 137' });
  });

  it('remembers the remains of the newest removed failed previews, forgets them on a new claim', () => {
    const t = new PreviewTable({ keepRemains: 2 });
    for (const id of ['a', 'b', 'c']) t.remember(id, { reason: `r-${id}`, log: [id], at: 1 });
    expect(t.remains('a')).toBeUndefined();
    expect(t.remains('b')?.reason).toBe('r-b');
    expect(t.remains('c')?.log).toEqual(['c']);
    t.add(record('c'));
    expect(t.remains('c')).toBeUndefined();
  });
});
