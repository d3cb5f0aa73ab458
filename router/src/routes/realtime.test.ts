import { ConflictError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { realtimeRefusal } from './realtime.ts';

describe('realtimeRefusal', () => {
  it('lets a placed server-side preview through', () => {
    expect(realtimeRefusal({ id: 'p', state: 'ready', tier: 'docker' })).toBeUndefined();
    expect(realtimeRefusal({ id: 'p', state: 'starting', tier: 'fly' })).toBeUndefined();
  });

  it.each(['ended', 'failed', 'stopping'] as const)('refuses a %s preview as preview_ended', (state) => {
    const e = realtimeRefusal({ id: 'p', state, tier: 'docker' });
    expect(e).toBeInstanceOf(ConflictError);
    expect(e?.code).toBe('preview_ended');
  });

  it.each([
    ['browser', { state: 'ready' as const, tier: 'browser' as const }],
    ['unplaced', { state: 'starting' as const, tier: null }],
    ['suspended', { state: 'suspended' as const, tier: 'docker' as const }],
  ])('refuses a %s preview as no_sync_channel', (_, s) => {
    expect(realtimeRefusal({ id: 'p', ...s })?.code).toBe('no_sync_channel');
  });
});
