import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { planSandbox, sweepStrays } from './reconcile.ts';
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

describe('sweepStrays: a running agent removes claimed sandboxes nothing holds', () => {
  const log = pino({ level: 'silent' });
  const setup = (boxes: SandboxInfo[]) => {
    const removed: string[] = [];
    const runtime = {
      list: async () => boxes.filter((b) => !removed.includes(b.id)),
      remove: async (id: string) => {
        removed.push(id);
        return true;
      },
    };
    return { removed, runtime };
  };

  it('removes a claimed sandbox untracked for the grace period; keeps tracked, in-flight and warm ones', async () => {
    const stray = box({ id: 'stray', previewId: 'gone', state: 'created' });
    const held = box({ id: 'held', previewId: 'p1' });
    const claiming = box({ id: 'claiming', previewId: 'p2' });
    const warm = box({ id: 'warm' });
    const { removed, runtime } = setup([stray, held, claiming, warm]);
    const table = { find: (id: string) => (id === 'p1' ? ({ box: held } as never) : undefined) };
    const seen = new Map<string, number>();
    const sweep = (now: number) =>
      sweepStrays({ runtime, table, claiming: (id) => id === 'p2', seen, graceMs: 60_000, now, log });
    expect(await sweep(0)).toEqual([]);
    expect(await sweep(30_000)).toEqual([]);
    expect(await sweep(60_000)).toEqual(['stray']);
    expect(removed).toEqual(['stray']);
    expect(await sweep(200_000)).toEqual([]);
    expect(seen.size).toBe(0);
  });

  it('a sandbox tracked again (a claim finished) starts its grace over', async () => {
    const b = box({ id: 'b', previewId: 'p3' });
    const { removed, runtime } = setup([b]);
    let tracked = false;
    const table = { find: () => (tracked ? ({ box: b } as never) : undefined) };
    const seen = new Map<string, number>();
    const sweep = (now: number) =>
      sweepStrays({ runtime, table, claiming: () => false, seen, graceMs: 60_000, now, log });
    await sweep(0);
    tracked = true;
    await sweep(50_000);
    tracked = false;
    expect(await sweep(100_000)).toEqual([]);
    expect(await sweep(170_000)).toEqual(['b']);
    expect(removed).toEqual(['b']);
  });
});
