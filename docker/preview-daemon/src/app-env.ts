import type { IncomingMessage, ServerResponse } from 'node:http';
import { APP_ENV_LIMITS, appEnvProblems } from '@preview/tiers';

/** Largest `POST /__preview/env` body: the environment limit plus JSON quoting and escapes. */
export const ENV_BODY_BYTES = APP_ENV_LIMITS.totalBytes * 2 + 4096;

/** What a set answered: `applied` (the dev server restarts with it) or `unchanged` (a repeat). */
export type EnvSetResult =
  | { ok: true; applied: boolean; names: string[] }
  | { ok: false; status: number; code: string; message: string };

/**
 * The app's environment, set once per claim: at start (`PREVIEW_APP_ENV`, a cold claim) or by the
 * claimer over `POST /__preview/env` (a warm sandbox taken from a pool). A repeat of the same
 * environment is accepted and changes nothing, so a claimer may retry; a different one is refused,
 * so nothing can swap the database of a running preview underneath it.
 *
 * @example
 * const env = new AppEnvironment(config.appEnv);
 * env.set({ DATABASE_URL: 'postgres://…' }); // { ok: true, applied: true, names: ['DATABASE_URL'] }
 */
export class AppEnvironment {
  #values: Record<string, string> | undefined;

  constructor(initial?: Record<string, string>) {
    if (initial) this.#values = { ...initial };
  }

  /** The variables (empty until set). */
  get values(): Readonly<Record<string, string>> {
    return this.#values ?? {};
  }

  /** Validates and sets `env`; see the class comment for repeats. */
  set(env: unknown): EnvSetResult {
    if (typeof env !== 'object' || env === null || Array.isArray(env))
      return { ok: false, status: 400, code: 'invalid_body', message: 'env: must be an object of strings' };
    const record = env as Record<string, unknown>;
    for (const [k, v] of Object.entries(record))
      if (typeof v !== 'string')
        return {
          ok: false,
          status: 400,
          code: 'invalid_env',
          message: `env.${k}: value must be a string (rule value_type)`,
        };
    const vars = record as Record<string, string>;
    const problems = appEnvProblems(vars);
    if (problems.length > 0)
      return {
        ok: false,
        status: 400,
        code: 'invalid_env',
        message: problems
          .slice(0, 5)
          .map((p) => `${p.field === '(env)' ? 'env' : `env.${p.field}`}: ${p.message} (rule ${p.rule})`)
          .join('; '),
      };
    const names = Object.keys(vars).sort();
    if (this.#values) {
      if (sameEnv(this.#values, vars)) return { ok: true, applied: false, names };
      return {
        ok: false,
        status: 409,
        code: 'env_already_set',
        message: `env: set once per claim, and this sandbox already has ${describe(this.#values)}`,
      };
    }
    this.#values = { ...vars };
    return { ok: true, applied: true, names };
  }
}

function sameEnv(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}

function describe(env: Record<string, string>): string {
  const names = Object.keys(env).sort();
  return names.length ? `a different one (${names.join(', ')})` : 'an empty one';
}

/**
 * `POST /__preview/env` (the caller checked the token): reads `{env: {NAME: value}}` within
 * {@link ENV_BODY_BYTES}, sets it, and calls `onApplied` before answering, so whoever sees the answer
 * also sees the daemon no longer ready (until the dev server runs with the environment).
 */
export function handleEnvRequest(
  req: IncomingMessage,
  res: ServerResponse,
  env: AppEnvironment,
  onApplied: () => void,
): void {
  const reply = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  if (req.method !== 'POST') {
    res.setHeader('allow', 'POST');
    reply(405, { error: { code: 'method_not_allowed', message: 'use POST' } });
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let refused = false;
  req.on('data', (c: Buffer) => {
    if (refused) return;
    size += c.length;
    if (size > ENV_BODY_BYTES) {
      refused = true;
      reply(413, {
        error: { code: 'too_large', message: `(body): at most ${ENV_BODY_BYTES} bytes (rule body_size)` },
      });
      req.resume();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (refused) return;
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return reply(400, { error: { code: 'invalid_body', message: '(body): must be JSON {"env": {...}}' } });
    }
    const r = env.set((body as { env?: unknown } | null)?.env);
    if (!r.ok) return reply(r.status, { error: { code: r.code, message: r.message } });
    if (r.applied) onApplied();
    reply(200, { applied: r.applied, names: r.names });
  });
  req.on('error', () => res.destroy());
}
