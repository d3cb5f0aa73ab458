import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { loadFixture } from '@preview/router/testkit/fixtures';
import { bearer, createHarness, type Harness } from '@preview/router/testkit/harness';
import { createLocalServerTier } from '@preview/router/testkit/local-tier';
import { createTestDatabase } from '@preview/testkit';
import { createBrowserTier, type ProjectFiles } from '@preview/tiers';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli, until } from './run-cli.ts';

/**
 * `preview ls / logs / rm / export` as processes against a router this test serves on loopback
 * (real Postgres, real db-isolation; previews on a local server tier).
 */
describe('preview ls, logs, rm, export against a running router', () => {
  let h: Harness;
  let server: http.Server;
  let url: string;
  let env: Record<string, string>;
  let dataDir: string;

  const create = async (files: ProjectFiles) => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files, client: { webcontainer: true, bundler: true }, serverOnly: true }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { id: string; state: string; tier: string };
  };

  beforeAll(async () => {
    h = await createHarness({
      databases: true,
      // deploy-db's target is a database on this machine's Postgres: internal, so allowed by name.
      env: { DEPLOY_TARGET_HOSTS: '127.0.0.1,localhost' },
      tiers: () => ({ browser: createBrowserTier(), docker: createLocalServerTier({ autoReady: true }) }),
    });
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // An empty DATA_DIR: no embedded router's local secrets are found unless a test puts them there.
    dataDir = await mkdtemp(join(tmpdir(), 'preview-cli-'));
    env = { PREVIEW_URL: url, PREVIEW_TOKEN: h.alice.jwt, DATA_DIR: dataDir };
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('ls lists my previews as plain text (no colours off a terminal) and as one JSON document', async () => {
    const p = await create(loadFixture('vite-vanilla'));
    const plain = await runCli(['ls'], env);
    expect(plain.stderr).toBe('');
    expect(plain.code).toBe(0);
    expect(plain.stdout).not.toContain('\x1b[');
    const lines = plain.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+STATE\s+TIER\s+TEMPLATE\s+CREATED\s+URL$/);
    expect(lines.find((l) => l.startsWith(p.id))).toMatch(
      new RegExp(`^${p.id}\\s+ready\\s+docker\\s+vite-vanilla`),
    );

    // Flags win over the environment.
    const json = await runCli(['ls', '--json', '--url', url, '--token', h.alice.jwt], {
      PREVIEW_URL: 'http://127.0.0.1:1',
    });
    expect(json.code).toBe(0);
    const doc = JSON.parse(json.stdout) as { previews: Array<{ id: string; state: string; tier: string }> };
    expect(doc.previews.find((x) => x.id === p.id)).toMatchObject({ state: 'ready', tier: 'docker' });

    // Another user sees none of them.
    const bob = await runCli(['ls', '--json'], { ...env, PREVIEW_TOKEN: h.bob.jwt });
    expect(JSON.parse(bob.stdout)).toEqual({ previews: [] });
  });

  it('logs prints the state and the recent log lines; --follow prints new ones and ends with the preview', async () => {
    const p = await create(loadFixture('vite-vanilla'));
    await h.router.previews.events.publish(p.id, {
      type: 'log',
      lines: ['VITE ready in 120 ms'],
      at: Date.now(),
    });
    const once = await runCli(['logs', p.id], env);
    expect(once.code).toBe(0);
    expect(once.stdout).toContain('[state] ready (docker)');
    expect(once.stdout).toContain('VITE ready in 120 ms');

    const json = await runCli(['logs', p.id, '--json'], env);
    const doc = JSON.parse(json.stdout) as {
      id: string;
      events: Array<{ event: string; data: { lines?: string[] } }>;
    };
    expect(doc.id).toBe(p.id);
    expect(doc.events[0]?.event).toBe('state');
    expect(doc.events.some((e) => e.event === 'log' && e.data.lines?.includes('VITE ready in 120 ms'))).toBe(
      true,
    );

    const follow = startCli(['logs', p.id, '--follow'], env);
    await until(() => follow.stdout().includes('VITE ready in 120 ms'), 30_000, 'the recent log lines');
    await h.router.previews.events.publish(p.id, { type: 'log', lines: ['GET / 200'], at: Date.now() });
    await until(() => follow.stdout().includes('GET / 200'), 30_000, 'the live log line');
    const rm = await runCli(['rm', p.id], env);
    expect(rm).toMatchObject({ code: 0, stdout: `removed ${p.id}\n` });
    const ended = await follow.done;
    expect(ended.code).toBe(0);
    expect(ended.stdout).toContain('[state] ended');
  });

  it("export writes the preview's database as SQL; --json wraps it in one document", async () => {
    const p = await create(loadFixture('express-pg'));
    const dbUrl = (h.router.previews.tiers.docker as ReturnType<typeof createLocalServerTier>)
      .files(p.id)
      ?.get('__env/DATABASE_URL');
    const app = new pg.Client({ connectionString: dbUrl });
    await app.connect();
    try {
      await app.query('CREATE TABLE todos (id serial PRIMARY KEY, title text NOT NULL)');
      await app.query(`INSERT INTO todos (title) VALUES ('ship the cli')`);
    } finally {
      await app.end();
    }
    const sql = await runCli(['export', p.id], env);
    expect(sql.code).toBe(0);
    expect(sql.stdout).toContain('todos');
    expect(sql.stdout).toContain('ship the cli');
    const json = await runCli(['export', p.id, '--json'], env);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: p.id, sql: expect.stringContaining('ship the cli') });
  });

  it("seed runs SQL from a file in a project's database; deploy-db copies it with its rows into another database", async () => {
    const projectId = `cli-app-${Date.now()}`;
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: loadFixture('express-pg'), serverOnly: true, projectId }),
    });
    expect(res.status).toBe(201);
    const seedFile = join(dataDir, 'seed.sql');
    await writeFile(
      seedFile,
      "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);\nINSERT INTO notes (body) VALUES ('one'), ('two');\n",
    );
    const seeded = await runCli(['seed', projectId, '--file', seedFile, '--json'], env);
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(JSON.parse(seeded.stdout)).toMatchObject({ projectId, ms: expect.any(Number) });

    const target = await createTestDatabase();
    try {
      const plain = await runCli(['deploy-db', projectId, '--target', target.url], env);
      expect(plain.code, plain.stderr).toBe(0);
      expect(plain.stdout).toMatch(/^deployed .* into schema public/);
      expect(plain.stdout).toMatch(/notes\s+2/);
      const { rows } = await target.pool.query<{ body: string }>('SELECT body FROM notes ORDER BY id');
      expect(rows.map((r) => r.body)).toEqual(['one', 'two']);
      // Again without --replace: the router's conflict, with its code, and exit 1.
      const again = await runCli(['deploy-db', projectId, '--target', target.url], env);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/^error target_conflict: .*notes/);
      const replaced = await runCli(
        ['deploy-db', projectId, '--target', target.url, '--replace', '--json'],
        env,
      );
      expect(replaced.code, replaced.stderr).toBe(0);
      expect(JSON.parse(replaced.stdout)).toMatchObject({
        projectId,
        schema: 'public',
        tables: [{ name: 'notes', rows: 2 }],
        replaced: expect.arrayContaining(['table notes']),
      });
    } finally {
      await target.drop();
    }
    const noTarget = await runCli(['deploy-db', projectId], env);
    expect(noTarget.code).toBe(1);
    expect(noTarget.stderr).toContain('--target / DEPLOY_DATABASE_URL: required');
  });

  it("prints the API's error code and message, and exits 1", async () => {
    const p = await create(loadFixture('vite-vanilla'));
    // Bob does not own alice's preview: the API answers 404 and nothing is removed.
    const bob = await runCli(['rm', p.id], { ...env, PREVIEW_TOKEN: h.bob.jwt });
    expect(bob.code).toBe(1);
    expect(bob.stdout).toBe('');
    expect(bob.stderr).toMatch(new RegExp(`^error not_found: .*${p.id}`));
    const still = await runCli(['ls', '--json'], env);
    expect(
      (JSON.parse(still.stdout) as { previews: Array<{ id: string }> }).previews.map((x) => x.id),
    ).toContain(p.id);

    const badId = await runCli(['logs', 'not-a-uuid', '--json'], env);
    expect(badId.code).toBe(1);
    const err = JSON.parse(badId.stdout) as { error: { code: string; message: string; status: number } };
    expect(err.error.status).toBe(400);
    expect(err.error.message).toMatch(/id/);

    // The events route's `follow` (what `logs` sends) is checked like any input.
    const badFollow = await fetch(`${url}/v1/previews/${p.id}/events?follow=maybe`, {
      headers: bearer(h.alice.jwt),
    });
    expect(badFollow.status).toBe(400);
    expect(((await badFollow.json()) as { error: { message: string } }).error.message).toMatch(
      /follow.*must be true or false \(rule enum\)/,
    );

    const badToken = await runCli(['ls'], { ...env, PREVIEW_TOKEN: 'nope' });
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toMatch(/^error invalid_token: invalid token/);

    // No token and no embedded router's secrets under DATA_DIR.
    const noToken = await runCli(['ls'], { PREVIEW_URL: url, DATA_DIR: dataDir });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('error invalid_config: --token / PREVIEW_TOKEN: required');

    const down = await runCli(['ls', '--json'], { ...env, PREVIEW_URL: 'http://127.0.0.1:1' });
    expect(down.code).toBe(1);
    expect(JSON.parse(down.stdout)).toMatchObject({ error: { code: 'unreachable', status: 0 } });
  });

  it("without a token, a router on this machine is asked with the embedded router's local token", async () => {
    const p = await create(loadFixture('vite-vanilla'));
    const secretsDir = join(dataDir, 'embedded');
    await mkdir(secretsDir, { recursive: true });
    // What `npm start` keeps under DATA_DIR (router/src/local-secrets.ts); here for the harness's secret and alice.
    await writeFile(
      join(secretsDir, 'local-secrets.json'),
      JSON.stringify({
        jwtSecret: h.secret,
        localUserId: h.alice.id,
        previewTokenSecret: 'x',
        joinToken: 'y',
      }),
    );
    const r = await runCli(['ls', '--json'], { PREVIEW_URL: url, DATA_DIR: secretsDir });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { previews: Array<{ id: string }> }).previews.map((x) => x.id)).toContain(
      p.id,
    );
    // Not for a router elsewhere: the local secrets mean nothing there.
    const remote = await runCli(['ls'], { PREVIEW_URL: 'http://router.example.test', DATA_DIR: secretsDir });
    expect(remote.stderr).toContain('error invalid_config: --token / PREVIEW_TOKEN: required');
  });

  it('a usage error exits 2 and says what is wrong', async () => {
    const r = await runCli(['rm'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("missing required argument 'id'");
  });
});
