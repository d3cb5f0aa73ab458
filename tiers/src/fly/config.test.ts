import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../errors.ts';
import { flyTierOptions, loadFlyConfig } from './config.ts';

const base = {
  FLY_API_TOKEN: 'fo1_token',
  FLY_APP: 'previews-prod',
  FLY_IMAGE: 'registry.fly.io/previews-prod:1',
  FLY_DAEMON_TOKEN_SECRET: 'x'.repeat(32),
};

describe('loadFlyConfig', () => {
  it('is off without a token', () => {
    expect(loadFlyConfig({})).toBeUndefined();
    expect(loadFlyConfig({ FLY_API_TOKEN: '' })).toBeUndefined();
  });

  it('applies defaults and maps to tier options', () => {
    const c = loadFlyConfig({ ...base, FLY_REGIONS: 'ams, fra ,cdg', FLY_MAX_MACHINES: '7' })!;
    expect(c.FLY_REGIONS).toEqual(['ams', 'fra', 'cdg']);
    const o = flyTierOptions(c);
    expect(o).toMatchObject({
      client: { token: 'fo1_token', app: 'previews-prod', baseUrl: 'https://api.machines.dev/v1' },
      regions: ['ams', 'fra', 'cdg'],
      maxMachines: 7,
      daemonPort: 17380,
      guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 1024 },
      maxInlineFilesBytes: 2 * 1024 * 1024,
    });
    expect(o.appUrl).toBeUndefined();
  });

  it('names every bad variable and its rule', () => {
    const err = (() => {
      try {
        loadFlyConfig({
          ...base,
          FLY_APP: 'Bad App',
          FLY_REGIONS: 'amsterdam',
          FLY_DAEMON_TOKEN_SECRET: 'short',
        });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err?.message).toMatch(/FLY_APP/);
    expect(err?.message).toMatch(/FLY_REGIONS/);
    expect(err?.message).toMatch(/FLY_DAEMON_TOKEN_SECRET: at least 16 characters/);
  });
});
