import { describe, expect, it } from 'vitest';
import { APP_ENV_LIMITS, AppEnv, appEnvProblems, appEnvVarProblem } from './app-env.ts';

describe('appEnvVarProblem', () => {
  it.each([
    ['DATABASE_URL', 'postgres://p_1:pw@172.18.0.1:5432/app'],
    ['VITE_API_BASE', '/api'],
    ['NEXT_PUBLIC_X', ''],
    ['_private', 'ünïcode'],
    ['lower_case9', 'x'],
  ])('accepts %s', (name, value) => {
    expect(appEnvVarProblem(name, value)).toBeUndefined();
  });

  it.each([
    ['1ABC', 'x', 'name'],
    ['A-B', 'x', 'name'],
    ['A=B', 'x', 'name'],
    ['', 'x', 'name'],
    ['A'.repeat(129), 'x', 'name_length'],
    ['PATH', '/evil', 'reserved_name'],
    ['HOME', '/', 'reserved_name'],
    ['NODE_OPTIONS', '--require /tmp/x.js', 'reserved_name'],
    ['node_options', '--inspect', 'reserved_name'],
    ['NODE_ENV', 'production', 'reserved_name'],
    ['PORT', '1', 'reserved_name'],
    ['PREVIEW_DAEMON_TOKEN', 'x', 'reserved_name'],
    ['PREVIEW_ANYTHING', 'x', 'reserved_name'],
    ['npm_config_registry', 'http://evil', 'reserved_name'],
    ['NPM_CONFIG_CACHE', '/tmp', 'reserved_name'],
    ['LD_PRELOAD', '/tmp/x.so', 'reserved_name'],
    ['OK', 'a\u0000b', 'nul'],
    ['OK', 'x'.repeat(APP_ENV_LIMITS.valueBytes + 1), 'value_size'],
    ['OK', 'é'.repeat(APP_ENV_LIMITS.valueBytes / 2 + 1), 'value_size'],
  ])('rejects %j=%j with rule %s', (name, value, rule) => {
    expect(appEnvVarProblem(name, value)?.rule).toBe(rule);
  });
});

describe('AppEnv', () => {
  it('names the variable and the rule in the issue', () => {
    const r = AppEnv.safeParse({ DATABASE_URL: 'postgres://x', NODE_OPTIONS: '--inspect' });
    expect(r.success).toBe(false);
    const issue = r.error!.issues[0]!;
    expect(issue.path).toEqual(['NODE_OPTIONS']);
    expect(issue.message).toMatch(/reserved.*\(rule reserved_name\)/);
  });

  it('limits the number of variables and the total size', () => {
    const many = Object.fromEntries(
      Array.from({ length: APP_ENV_LIMITS.vars + 1 }, (_, i) => [`V${i}`, 'x']),
    );
    expect(appEnvProblems(many).map((p) => p.rule)).toEqual(['too_many_vars']);
    const big = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`V${i}`, 'x'.repeat(8000)]));
    expect(appEnvProblems(big)).toEqual([expect.objectContaining({ field: '(env)', rule: 'total_size' })]);
    expect(AppEnv.safeParse(big).success).toBe(false);
    expect(AppEnv.safeParse({ A: '1', B: '2' }).success).toBe(true);
  });

  it('refuses values that are not strings', () => {
    expect(AppEnv.safeParse({ A: 1 }).success).toBe(false);
  });
});
