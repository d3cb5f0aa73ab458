import { z } from 'zod';
import { utf8Length } from './paths.ts';

/** Limits on the environment a preview's app gets (checked by the agent and again by the daemon). */
export const APP_ENV_LIMITS = {
  /** Most variables. */
  vars: 64,
  /** Longest name, in characters. */
  nameChars: 128,
  /** Largest value, in bytes of UTF-8. */
  valueBytes: 8192,
  /** Largest environment, names and values summed, in bytes of UTF-8. */
  totalBytes: 32 * 1024,
} as const;

/**
 * Names the sandbox sets for itself: the daemon's own configuration, what the dev servers are told
 * (where to listen, which mode), and what changes how Node, npm or the dynamic linker behave.
 */
const RESERVED_NAMES = new Set([
  'PATH',
  'HOME',
  'NODE_OPTIONS',
  'NODE_PATH',
  'NODE_ENV',
  'NODE_EXTRA_CA_CERTS',
  'PORT',
  'HOST',
  'HOSTNAME',
]);
/** Prefixes of reserved names, compared case-insensitively (npm reads `NPM_CONFIG_*` too). */
const RESERVED_PREFIXES = ['PREVIEW_', 'NPM_CONFIG_', 'LD_'];

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Why one variable of a preview's app environment is not acceptable, or `undefined` when it is.
 * Rules: `name` (an environment variable name: letters, digits, `_`, not starting with a digit),
 * `name_length`, `reserved_name` (see {@link RESERVED_NAMES} and the `PREVIEW_`, `npm_config_`,
 * `LD_` prefixes), `value_size`, `nul` (a value cannot hold NUL).
 */
export function appEnvVarProblem(name: string, value: string): { rule: string; message: string } | undefined {
  if (!NAME_RE.test(name))
    return {
      rule: 'name',
      message: 'must be an environment variable name (letters, digits and "_", not starting with a digit)',
    };
  if (name.length > APP_ENV_LIMITS.nameChars)
    return { rule: 'name_length', message: `name must be at most ${APP_ENV_LIMITS.nameChars} characters` };
  const upper = name.toUpperCase();
  if (RESERVED_NAMES.has(upper) || RESERVED_PREFIXES.some((p) => upper.startsWith(p)))
    return { rule: 'reserved_name', message: 'is reserved: the sandbox sets it itself' };
  if (typeof value !== 'string') return { rule: 'value_type', message: 'value must be a string' };
  if (value.includes('\u0000')) return { rule: 'nul', message: 'value must not contain NUL' };
  if (utf8Length(value) > APP_ENV_LIMITS.valueBytes)
    return { rule: 'value_size', message: `value must be at most ${APP_ENV_LIMITS.valueBytes} bytes` };
  return undefined;
}

/**
 * Every problem of a whole environment, each as `{field, rule, message}` where `field` is the
 * variable's name (or `(env)` for rules on the whole object: `too_many_vars`, `total_size`).
 */
export function appEnvProblems(
  env: Record<string, string>,
): { field: string; rule: string; message: string }[] {
  const out: { field: string; rule: string; message: string }[] = [];
  const names = Object.keys(env);
  if (names.length > APP_ENV_LIMITS.vars)
    out.push({
      field: '(env)',
      rule: 'too_many_vars',
      message: `at most ${APP_ENV_LIMITS.vars} variables, got ${names.length}`,
    });
  let total = 0;
  for (const name of names) {
    const value = env[name] as string;
    const p = appEnvVarProblem(name, value);
    if (p) out.push({ field: name, ...p });
    else total += utf8Length(name) + utf8Length(value);
  }
  if (total > APP_ENV_LIMITS.totalBytes)
    out.push({
      field: '(env)',
      rule: 'total_size',
      message: `names and values must sum to at most ${APP_ENV_LIMITS.totalBytes} bytes`,
    });
  return out;
}

/**
 * The environment of a preview's app (e.g. its `DATABASE_URL`), as the agent's claim body and the
 * daemon's `POST /__preview/env` take it. Issues name the variable and the rule.
 *
 * @example
 * AppEnv.parse({ DATABASE_URL: 'postgres://p_1:pw@db:5432/app' }); // ok
 * AppEnv.safeParse({ NODE_OPTIONS: '--inspect' }).success; // false: "NODE_OPTIONS: is reserved … (rule reserved_name)"
 */
export const AppEnv = z.record(z.string(), z.string()).superRefine((env, ctx) => {
  for (const p of appEnvProblems(env))
    ctx.addIssue({
      code: 'custom',
      path: p.field === '(env)' ? [] : [p.field],
      message: `${p.message} (rule ${p.rule})`,
    });
});
export type AppEnv = z.output<typeof AppEnv>;
