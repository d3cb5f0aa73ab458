import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, requirePrerequisites, type TestDatabase } from '@preview/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  buildDaemon,
  type HostDaemon,
  health,
  PKG_DIR,
  SyncClient,
  spawnDaemon,
  until,
} from '../test/helpers.ts';

// express-pg needs its installed dependencies: the templates as docker/preview-base/build.sh stages them.
const INSTALLED_TEMPLATES = join(PKG_DIR, '../preview-base/.build/context/templates');
const noInstalledTemplates = existsSync(join(INSTALLED_TEMPLATES, 'express-pg/node_modules/express'))
  ? undefined
  : 'installed templates missing: run scripts/test-env.sh (docker/preview-base/build.sh stages them)';

beforeAll(() => {
  buildDaemon();
});

/** `token: null` sends no Authorization header. */
const setEnv = (d: HostDaemon, body: unknown, token: string | null = d.token) =>
  fetch(`http://127.0.0.1:${d.port}/__preview/env`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
const errorOf = async (res: Response) =>
  ((await res.json()) as { error: { code: string; message: string } }).error;
const ready = (d: HostDaemon, what: string) =>
  until(async () => (await health(d.port)).status === 200, 90_000, what);

describe('POST /__preview/env on a running vite-vanilla daemon', () => {
  let d: HostDaemon;
  let sync: SyncClient;

  beforeAll(async () => {
    d = await spawnDaemon({ template: 'vite-vanilla' });
    sync = await SyncClient.connect(`ws://127.0.0.1:${d.port}/__preview/sync?token=${d.token}`);
    await ready(d, 'ready before the env');
  });
  afterAll(async () => {
    sync?.close();
    await d?.stop();
  });

  it('needs the token and POST', async () => {
    expect((await setEnv(d, { env: { A: '1' } }, null)).status).toBe(401);
    expect((await setEnv(d, { env: { A: '1' } }, 'wrong-token-wrong-token')).status).toBe(401);
    const get = await fetch(`http://127.0.0.1:${d.port}/__preview/env`, {
      headers: { authorization: `Bearer ${d.token}` },
    });
    expect(get.status).toBe(405);
  });

  it('refuses a bad environment naming the variable and the rule, and applies nothing of it', async () => {
    const cases: Array<[unknown, number, string, RegExp]> = [
      [
        { env: { NODE_OPTIONS: '--require /tmp/x.js' } },
        400,
        'invalid_env',
        /env\.NODE_OPTIONS: .*rule reserved_name/,
      ],
      [
        { env: { PREVIEW_DAEMON_TOKEN: 'x' } },
        400,
        'invalid_env',
        /env\.PREVIEW_DAEMON_TOKEN: .*rule reserved_name/,
      ],
      [{ env: { PATH: '/tmp' } }, 400, 'invalid_env', /env\.PATH: .*rule reserved_name/],
      [{ env: { OK: '1', '1BAD': 'x' } }, 400, 'invalid_env', /env\.1BAD: .*rule name/],
      [{ env: { BIG: 'x'.repeat(9000) } }, 400, 'invalid_env', /env\.BIG: .*rule value_size/],
      [{ env: { NUM: 1 } }, 400, 'invalid_env', /env\.NUM: .*rule value_type/],
      [{ env: ['A=1'] }, 400, 'invalid_body', /env: must be an object/],
      [{}, 400, 'invalid_body', /env: must be an object/],
      ['{not json', 400, 'invalid_body', /must be JSON/],
      [{ env: { BIG: 'x'.repeat(200_000) } }, 413, 'too_large', /rule body_size/],
    ];
    for (const [body, status, code, message] of cases) {
      const res = await setEnv(d, body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(status);
      const e = await errorOf(res);
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
    }
    // Still ready: nothing was applied, nothing restarted.
    expect((await health(d.port)).status).toBe(200);
  });

  it('applies it once: not ready until Vite restarted with it; VITE_ names reach import.meta.env, others not', async () => {
    const from = sync.frames.length;
    const env = { VITE_GREETING: 'hello-from-env', SECRET_TOKEN: 'server-only' };
    const res = await setEnv(d, { env });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ applied: true, names: ['SECRET_TOKEN', 'VITE_GREETING'] });
    const starting = await sync.next(
      (f) => f.type === 'status' && f['phase'] === 'starting' && f['message'] === 'applying the environment',
      10_000,
      'not ready once the env is set',
      from,
    );
    await sync.next(
      (f) => f.type === 'status' && f['phase'] === 'ready',
      60_000,
      'ready again',
      sync.frames.indexOf(starting),
    );
    const ack = await sync.batch(1, [
      {
        op: 'put',
        path: 'src/env-probe.js',
        content:
          'export const greeting = import.meta.env.VITE_GREETING;\nexport const secret = import.meta.env.SECRET_TOKEN;\n',
      },
    ]);
    expect(ack.type).toBe('ack');
    const mod = await (await fetch(`http://127.0.0.1:${d.port}/src/env-probe.js`)).text();
    expect(mod).toContain('hello-from-env');
    expect(mod).not.toContain('server-only');

    // The same environment again changes nothing (a retrying claimer); a different one is refused.
    const again = await setEnv(d, { env });
    expect(await again.json()).toEqual({ applied: false, names: ['SECRET_TOKEN', 'VITE_GREETING'] });
    expect((await health(d.port)).status).toBe(200);
    const other = await setEnv(d, { env: { VITE_GREETING: 'swapped' } });
    expect(other.status).toBe(409);
    const e = await errorOf(other);
    expect(e.code).toBe('env_already_set');
    expect(e.message).toMatch(/SECRET_TOKEN, VITE_GREETING/);
  });
});

describe('express-pg daemon and a real Postgres', () => {
  let db: TestDatabase;
  // Each test fails naming what is missing (a failed beforeAll would count them as skipped).
  beforeEach(() => requirePrerequisites(noInstalledTemplates));
  beforeAll(async () => {
    db = await createTestDatabase({ max: 2 });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('a warm server without a database takes DATABASE_URL at claim time and queries it', async () => {
    const d = await spawnDaemon({
      template: 'express-pg',
      env: { PREVIEW_TEMPLATES_DIR: INSTALLED_TEMPLATES },
    });
    try {
      await ready(d, 'warm express-pg');
      const before = await (await fetch(`http://127.0.0.1:${d.port}/`)).text();
      expect(before).toContain('DATABASE_URL is not set');
      const res = await setEnv(d, { env: { DATABASE_URL: db.url } });
      expect(res.status).toBe(200);
      // From the answer on, the app is not served until node runs with the environment.
      const right = await fetch(`http://127.0.0.1:${d.port}/`);
      const text = await right.text();
      if (right.status === 200) expect(text).not.toContain('DATABASE_URL is not set');
      else expect(right.status).toBe(503);
      await ready(d, 'ready with the env');
      const page = await (await fetch(`http://127.0.0.1:${d.port}/`)).text();
      expect(page).toMatch(/Database connected: \d+ visits/);
      const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM visits');
      expect(rows[0].n).toBeGreaterThanOrEqual(1);
    } finally {
      await d.stop();
    }
  });

  it('takes the environment at start (PREVIEW_APP_ENV, a cold claim) and then only accepts the same', async () => {
    const d = await spawnDaemon({
      template: 'express-pg',
      env: {
        PREVIEW_TEMPLATES_DIR: INSTALLED_TEMPLATES,
        PREVIEW_APP_ENV: JSON.stringify({ DATABASE_URL: db.url }),
      },
    });
    try {
      await ready(d, 'cold express-pg');
      expect(await (await fetch(`http://127.0.0.1:${d.port}/`)).text()).toMatch(/Database connected/);
      const same = await setEnv(d, { env: { DATABASE_URL: db.url } });
      expect(await same.json()).toEqual({ applied: false, names: ['DATABASE_URL'] });
      expect((await setEnv(d, { env: { DATABASE_URL: 'postgres://elsewhere/x' } })).status).toBe(409);
    } finally {
      await d.stop();
    }
  });

  it('refuses a bad PREVIEW_APP_ENV at start, naming the variable and rule', async () => {
    await expect(
      spawnDaemon({
        template: 'express-pg',
        env: {
          PREVIEW_TEMPLATES_DIR: INSTALLED_TEMPLATES,
          PREVIEW_APP_ENV: JSON.stringify({ NODE_OPTIONS: 'x' }),
        },
      }),
    ).rejects.toThrow(/PREVIEW_APP_ENV\.NODE_OPTIONS: .*rule reserved_name/);
    await expect(spawnDaemon({ template: 'express-pg', env: { PREVIEW_APP_ENV: '{nope' } })).rejects.toThrow(
      /PREVIEW_APP_ENV: must be a JSON object/,
    );
  });
});
