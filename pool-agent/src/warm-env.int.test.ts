import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, requirePrerequisites, type TestDatabase } from '@preview/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { authed, exec, expressPgProject, startAgent, testConfig } from '../test/fixtures.ts';
import { type Agent, createAgent } from './agent.ts';
import { createProcessRuntime } from './runtime/process.ts';

const pid = () => `p${randomBytes(6).toString('hex')}`;

/**
 * A per-preview database the way db-isolation hands one out: its own login role (here the owner of
 * a fresh test database, so the app may create tables), reached with a DATABASE_URL.
 */
async function previewDatabase(): Promise<{
  db: TestDatabase;
  role: string;
  url: string;
  drop(): Promise<void>;
}> {
  const db = await createTestDatabase({ max: 2 });
  const role = `p_t_${randomBytes(5).toString('hex')}`;
  // The test database's pool connects as the server's superuser; roles are server-wide.
  await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw_${role}'`);
  await db.pool.query(`ALTER DATABASE ${db.name} OWNER TO ${role}`);
  const url = new URL(db.url);
  url.username = role;
  url.password = `pw_${role}`;
  return {
    db,
    role,
    url: url.toString(),
    async drop() {
      // What the app created belongs to the role: hand it over so the role can go, then the database.
      await db.pool.query(`REASSIGN OWNED BY ${role} TO CURRENT_USER`);
      await db.pool.query(`DROP OWNED BY ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
      await db.drop();
    },
  };
}

async function metric(agent: Agent, token: string, line: RegExp): Promise<number> {
  const text = await (await fetch(`${agent.url}/metrics`, authed(token))).text();
  for (const l of text.split('\n')) if (line.test(l)) return Number(l.split(' ').pop());
  return 0;
}

async function claimHttp(
  agent: Agent,
  token: string,
  body: object,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(
    `${agent.url}/v1/previews`,
    authed(token, { method: 'POST', body: JSON.stringify(body) }),
  );
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('warm claims for previews with an environment (Docker, real Postgres)', () => {
  let agent: Agent;
  let runtime: Awaited<ReturnType<typeof startAgent>>['runtime'];
  let stop: () => Promise<void>;
  let token: string;
  let pdb: Awaited<ReturnType<typeof previewDatabase>>;

  beforeAll(async () => {
    pdb = await previewDatabase();
    const config = testConfig({ WARM_POOL: 'express-pg=1', PREVIEW_DATABASE_TARGET: '127.0.0.1:5432' });
    token = config.AGENT_TOKEN!;
    ({ agent, runtime, stop } = await startAgent(config));
    await agent.pools.populate();
    await agent.pools.settled();
  });
  afterAll(async () => {
    await stop?.();
    await pdb?.drop();
  });

  it('refuses a bad environment naming the variable and rule, without taking a warm sandbox', async () => {
    expect(agent.pools.counts()['express-pg']).toBe(1);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ NODE_OPTIONS: '--require /tmp/x.js' }, /env\.NODE_OPTIONS: .*rule reserved_name/],
      [{ PREVIEW_DAEMON_TOKEN: 'x' }, /env\.PREVIEW_DAEMON_TOKEN: .*rule reserved_name/],
      [{ 'BAD-NAME': 'x' }, /env\.BAD-NAME: .*rule name/],
      [{ DATABASE_URL: 'x'.repeat(9000) }, /env\.DATABASE_URL: .*rule value_size/],
    ];
    for (const [env, message] of cases) {
      const r = await claimHttp(agent, token, {
        previewId: pid(),
        template: 'express-pg',
        files: expressPgProject('bad'),
        env,
      });
      expect(r.status).toBe(400);
      const e = (r.body as { error: { code: string; message: string } }).error;
      expect(e.code).toBe('invalid_body');
      expect(e.message).toMatch(message);
    }
    expect(agent.pools.counts()['express-pg']).toBe(1);
    expect(agent.sessions()).toEqual([]);
  });

  it('an express-pg preview with DATABASE_URL is claimed warm and its route queries its own database', async () => {
    const previewId = pid();
    const envWarm = /^preview_agent_env_claims_total\{path="warm"\}/;
    const before = await metric(agent, token, envWarm);
    const warmBefore = await metric(agent, token, /^preview_agent_claims_total\{path="warm",outcome="ok"\}/);
    const r = await claimHttp(agent, token, {
      previewId,
      template: 'express-pg',
      files: expressPgProject('warm-env'),
      env: { DATABASE_URL: pdb.url, GREETING: 'hi' },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body['warm']).toBe(true);
    // The pool's counters say where it came from: one more warm claim, and one more warm env claim.
    expect(await metric(agent, token, envWarm)).toBe(before + 1);
    expect(await metric(agent, token, /^preview_agent_claims_total\{path="warm",outcome="ok"\}/)).toBe(
      warmBefore + 1,
    );
    expect(await metric(agent, token, /^preview_agent_env_claims_total\{path="cold"\}/)).toBe(0);
    const containerId = String(r.body['containerId']);
    const info = await runtime.docker.getContainer(containerId).inspect();
    // Made for the pool before the claim: the environment is not in its configuration.
    expect(info.Config.Labels['preview.pool']).toBe('express-pg');
    expect(
      (info.Config.Env ?? []).some((e) => e.startsWith('DATABASE_URL=') || e.startsWith('PREVIEW_APP_ENV=')),
    ).toBe(false);
    // Same hardening as any preview.
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    expect(info.HostConfig.SecurityOpt).toContain('no-new-privileges');

    const upstream = String(r.body['upstream']);
    const db = await fetch(`${upstream}/api/db`, { headers: { 'x-agent-token': token } });
    expect(db.status).toBe(200);
    expect(await db.json()).toEqual({ marker: 'warm-env', db: pdb.db.name, role: pdb.role });
    const page = await (await fetch(`${upstream}/`, { headers: { 'x-agent-token': token } })).text();
    // Every GET / records a visit (the daemon's readiness probes too): the page shows the table's count.
    const shown = Number(/Database connected: (\d+) visits/.exec(page)?.[1]);
    const { rows } = await pdb.db.pool.query('SELECT count(*)::int AS n FROM visits');
    expect(shown, page).toBeGreaterThanOrEqual(1);
    expect(rows[0].n).toBe(shown);

    // The app's node process has the environment, pointed at the forwarder on the gateway.
    const environ = await exec(runtime.docker, containerId, [
      'sh',
      '-c',
      'for p in /proc/[0-9]*; do tr "\\0" "\\n" < $p/environ 2>/dev/null | grep -q "^GREETING=hi$" && tr "\\0" "\\n" < $p/environ | grep "^DATABASE_URL="; done | head -1',
    ]);
    const appUrl = new URL(environ.out.trim().slice('DATABASE_URL='.length));
    expect(appUrl.hostname).toBe(runtime.gateway);
    expect(appUrl.username).toBe(pdb.role);

    // Reachability is the same as for any preview: the forwarder only, not Postgres directly.
    const probe = (host: string, port: string | number) =>
      `const s=require('net').connect(${port},'${host}');s.setTimeout(3000);s.on('connect',()=>s.write(Buffer.from([0,0,0,8,4,210,22,47])));s.on('data',d=>{console.log('PG',String.fromCharCode(d[0]));process.exit(0)});s.on('timeout',()=>{console.log('TIMEOUT');process.exit(1)});s.on('error',e=>{console.log('ERR',e.code);process.exit(1)});`;
    expect(
      (await exec(runtime.docker, containerId, ['node', '-e', probe(runtime.gateway!, 5432)])).out,
    ).not.toMatch(/PG/);
    expect(
      (await exec(runtime.docker, containerId, ['node', '-e', probe('127.0.0.1', 5432)])).out,
    ).not.toMatch(/PG/);
    expect(await agent.destroy(previewId)).toBe(true);
  });

  it('a warm express-pg claim without env answers with the user’s server, not the template’s, once it returns', async () => {
    // The pool refills after the claim above; wait for a ready one so this claim is warm too.
    await agent.pools.settled();
    const previewId = pid();
    const r = await claimHttp(agent, token, {
      previewId,
      template: 'express-pg',
      files: expressPgProject('warm-no-env'),
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body['warm']).toBe(true);
    // The template's server has no /api/db (404); the user's has it, and says it has no database.
    const res = await fetch(`${String(r.body['upstream'])}/api/db`, { headers: { 'x-agent-token': token } });
    expect([res.status, await res.json()]).toEqual([500, { error: 'no DATABASE_URL' }]);
    expect(await agent.destroy(previewId)).toBe(true);
  });
});

const repo = join(import.meta.dirname, '../..');
const bundle = join(repo, 'docker/preview-daemon/dist/daemon.mjs');
const templatesDir = join(repo, 'docker/preview-base/.build/context/templates');
const missing = !existsSync(bundle)
  ? 'daemon bundle missing: run scripts/test-env.sh'
  : !existsSync(join(templatesDir, 'express-pg/node_modules/express'))
    ? 'installed templates missing: run scripts/test-env.sh'
    : undefined;

describe('warm claims with an environment on the host-process runtime', () => {
  beforeEach(() => requirePrerequisites(missing));
  it('an express-pg preview with DATABASE_URL is claimed warm and queries its database', async () => {
    const pdb = await previewDatabase();
    const config = testConfig({ WARM_POOL: 'express-pg=1' });
    const runtime = createProcessRuntime({ daemonBundle: bundle, templatesDir, sandbox: 'auto' });
    const agent = await createAgent({ config, runtime });
    try {
      await agent.pools.populate();
      await agent.pools.settled();
      const r = await claimHttp(agent, config.AGENT_TOKEN!, {
        previewId: pid(),
        template: 'express-pg',
        files: expressPgProject('host-env'),
        env: { DATABASE_URL: pdb.url },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      expect(r.body['warm']).toBe(true);
      expect(await metric(agent, config.AGENT_TOKEN!, /^preview_agent_env_claims_total\{path="warm"\}/)).toBe(
        1,
      );
      const db = await fetch(`${String(r.body['upstream'])}/api/db`, {
        headers: { 'x-agent-token': config.AGENT_TOKEN! },
      });
      expect(await db.json()).toEqual({ marker: 'host-env', db: pdb.db.name, role: pdb.role });
    } finally {
      await agent.close();
      await pdb.drop();
    }
  });
});
