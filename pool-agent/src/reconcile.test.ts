import { describe, expect, it } from 'vitest';
import { planSandbox } from './reconcile.ts';
import type { SandboxInfo } from './runtime/types.ts';

const box = (o: Partial<SandboxInfo>): SandboxInfo => ({
  id: 'c1',
  template: 'vite-react',
  previewId: undefined,
  pool: undefined,
  state: 'running',
  upstream: 'http://127.0.0.1:9',
  daemonToken: 'd'.repeat(24),
  ...o,
});
const base = { live: undefined, tracked: () => false, warmWanted: () => true };

describe('planSandbox: what a starting agent does with each sandbox it finds', () => {
  it('adopts a claimed sandbox of a live session, reading its state from the sandbox', () => {
    const live = new Set(['p1']);
    expect(planSandbox(box({ previewId: 'p1' }), { ...base, live })).toEqual({
      action: 'adopt',
      previewId: 'p1',
      state: { kind: 'ready' },
    });
    expect(planSandbox(box({ previewId: 'p1', state: 'paused' }), { ...base, live })).toMatchObject({
      state: { kind: 'suspended' },
    });
    const exit = { code: 137, oomKilled: true, reason: 'out of memory: killed' };
    expect(planSandbox(box({ previewId: 'p1', state: 'exited', exit }), { ...base, live })).toMatchObject({
      state: { kind: 'failed', reason: 'out of memory: killed' },
    });
  });

  it('adopts every claimed sandbox when nobody can say which sessions are live', () => {
    expect(planSandbox(box({ previewId: 'px' }), base).action).toBe('adopt');
  });

  it('removes a claimed sandbox whose session is not live; keeps one already tracked', () => {
    expect(planSandbox(box({ previewId: 'p2' }), { ...base, live: new Set(['p1']) })).toMatchObject({
      action: 'remove',
    });
    expect(planSandbox(box({ previewId: 'p1' }), { ...base, tracked: () => true }).action).toBe('keep');
  });

  it('offers a running unclaimed sandbox to its pool below target, removes it otherwise', () => {
    expect(planSandbox(box({}), base).action).toBe('warm-if-healthy');
    expect(planSandbox(box({}), { ...base, warmWanted: () => false }).action).toBe('remove');
    expect(planSandbox(box({ state: 'exited' }), base).action).toBe('remove');
  });
});
