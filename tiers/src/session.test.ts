import { describe, expect, expectTypeOf, it } from 'vitest';
import { canTransition, type NextState, SESSION_STATES, statesLeadingTo } from './session.ts';

describe('session states', () => {
  it('allows the happy path and the suspend/resume loop', () => {
    const path = [
      'queued',
      'provisioning',
      'starting',
      'ready',
      'suspended',
      'ready',
      'stopping',
      'ended',
    ] as const;
    for (let i = 1; i < path.length; i++) expect(canTransition(path[i - 1]!, path[i]!)).toBe(true);
  });

  it('rejects leaving ended and skipping stopping', () => {
    for (const s of SESSION_STATES) expect(canTransition('ended', s)).toBe(false);
    expect(canTransition('ready', 'ended')).toBe(false);
    expect(canTransition('queued', 'suspended')).toBe(false);
  });

  it('lists the sources of a target state', () => {
    expect(statesLeadingTo('suspended')).toEqual(['ready']);
    expect(statesLeadingTo('ended').sort()).toEqual(['failed', 'stopping']);
  });

  it('types the next states', () => {
    expectTypeOf<NextState<'ready'>>().toEqualTypeOf<
      'suspended' | 'starting' | 'migrating' | 'stopping' | 'failed'
    >();
    expectTypeOf<NextState<'ended'>>().toBeNever();
  });
});
