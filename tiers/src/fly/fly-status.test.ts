import { describe, expect, it } from 'vitest';
import { liveCount, sandboxesOf, statusOfMachine } from './fly-status.ts';
import type { FlyMachine } from './machines-client.ts';

const machine = (state: string, over: Partial<FlyMachine> = {}): FlyMachine =>
  ({ id: `m-${state}`, state, region: 'ams', ...over }) as FlyMachine;

describe('statusOfMachine', () => {
  it.each(['suspended', 'suspending', 'stopped', 'stopping'])('%s → suspended', (state) => {
    expect(statusOfMachine(state)).toEqual({ phase: 'suspended', message: `machine ${state}` });
  });
  it.each(['created', 'starting', 'replacing'])('%s → starting', (state) => {
    expect(statusOfMachine(state)).toEqual({ phase: 'starting', message: `machine ${state}` });
  });
  it('leaves a started machine to its daemon', () => {
    expect(statusOfMachine('started')).toBeUndefined();
  });
});

describe('machines in the tier', () => {
  const meta = (previewId: string) => ({ config: { image: 'i', metadata: { preview_id: previewId } } });
  const list = [
    machine('started', { ...meta('a'), created_at: '2026-01-02T03:04:05Z' }),
    machine('suspended', { ...meta('b'), created_at: 'not a date' }),
    machine('destroyed', meta('c')),
    machine('started'),
  ] as FlyMachine[];

  it('counts live machines only', () => {
    expect(liveCount(list)).toBe(3);
  });

  it('lists live machines with a preview id, createdAt only when Fly gave a date', () => {
    expect(sandboxesOf(list)).toEqual([
      { previewId: 'a', createdAt: Date.parse('2026-01-02T03:04:05Z') },
      { previewId: 'b' },
    ]);
  });
});
