import { SUPABASE_ROLES } from '@preview/db-isolation';
import { CLAIM_TIMEOUT_MS } from '@preview/tiers/docker';
import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';

describe('PREVIEW_DB_TRUSTED_ROLES', () => {
  it.each([
    ['postgres://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres'],
    ['postgres://postgres.abcdefghijklmnopqrst:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres'],
  ])('defaults to Supabase roles for %s', (url) => {
    const c = loadConfig({ DATABASE_URL: url });
    expect(c.PREVIEW_DB_TRUSTED_ROLES).toEqual([...SUPABASE_ROLES]);
    expect(c.PREVIEW_DB_TRUSTED_ROLES).toEqual(
      expect.arrayContaining(['anon', 'authenticated', 'service_role', 'authenticator']),
    );
  });

  it('defaults to none for other Postgres hosts and for the embedded database', () => {
    expect(
      loadConfig({ DATABASE_URL: 'postgres://postgres@10.0.0.5:5432/app' }).PREVIEW_DB_TRUSTED_ROLES,
    ).toEqual([]);
    expect(loadConfig({}).PREVIEW_DB_TRUSTED_ROLES).toEqual([]);
    expect(
      loadConfig({ DATABASE_URL: 'postgres://u@supabase.co.evil.example:5432/app' }).PREVIEW_DB_TRUSTED_ROLES,
    ).toEqual([]);
  });

  it('takes an explicit list (also on Supabase), and `none`', () => {
    const supabase = 'postgres://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres';
    expect(
      loadConfig({ DATABASE_URL: supabase, PREVIEW_DB_TRUSTED_ROLES: ' app_reader , reporting ' })
        .PREVIEW_DB_TRUSTED_ROLES,
    ).toEqual(['app_reader', 'reporting']);
    expect(
      loadConfig({ DATABASE_URL: supabase, PREVIEW_DB_TRUSTED_ROLES: 'none' }).PREVIEW_DB_TRUSTED_ROLES,
    ).toEqual([]);
  });

  it('refuses a name that is not a role name, naming the variable and the rule', () => {
    expect(() => loadConfig({ PREVIEW_DB_TRUSTED_ROLES: 'anon, "x; DROP ROLE y' })).toThrow(
      /PREVIEW_DB_TRUSTED_ROLES: .*not a role name \(rule sql_identifier\)/,
    );
  });
});

describe('PLACE_TIMEOUT_MS', () => {
  it("defaults to no less than the docker tier's own claim deadline (a loaded node's claims finish)", () => {
    expect(loadConfig({}).PLACE_TIMEOUT_MS).toBeGreaterThanOrEqual(CLAIM_TIMEOUT_MS);
  });
  it('refuses a value that is not a positive number of ms, naming the variable', () => {
    expect(() => loadConfig({ PLACE_TIMEOUT_MS: '-5' })).toThrow(/PLACE_TIMEOUT_MS/);
  });
});
