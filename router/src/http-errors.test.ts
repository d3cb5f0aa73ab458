import { type AddressInfo, createServer } from 'node:net';
import {
  CapacityError,
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  PreviewError,
  TierUnavailableError,
  TimeoutError,
  UnauthorizedError,
} from '@preview/tiers';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import pg from 'pg';
import pino from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEPENDENCY_RETRY_AFTER_S, onError } from './http-errors.ts';

describe('onError maps every PreviewError subclass (table)', () => {
  const cases: Array<[Error, number, string, Record<string, string>?]> = [
    [new InvalidInputError('invalid_path', 'ops.0.path: must be relative'), 400, 'invalid_path'],
    [
      new UnauthorizedError('unauthorized', 'no token'),
      401,
      'unauthorized',
      { 'www-authenticate': 'Bearer' },
    ],
    [new ForbiddenError('forbidden', 'nope'), 403, 'forbidden'],
    [
      new InvalidInputError('body_too_large', 'body: larger than 10 bytes (rule max_body_bytes)'),
      413,
      'body_too_large',
    ],
    [
      new InvalidInputError('idempotency_mismatch', 'Idempotency-Key "k": different body'),
      422,
      'idempotency_mismatch',
    ],
    [new NotFoundError('not_found', 'gone'), 404, 'not_found'],
    [new ConflictError('conflict', 'ended'), 409, 'conflict'],
    [
      new CapacityError('rate_limited', 'slow down', { retryAfterMs: 1500 }),
      429,
      'rate_limited',
      { 'retry-after': '2' },
    ],
    [new TierUnavailableError('tier_unavailable', 'down', { tier: 'fly' }), 503, 'tier_unavailable'],
    [new TimeoutError('timeout', 'slow'), 504, 'timeout'],
    [new PreviewError('weird', 'base class'), 500, 'weird'],
    [new Error('secret internals'), 500, 'internal'],
  ];
  it.each(cases)('%s → %i', async (err, status, code, headers) => {
    const app = new Hono();
    app.onError(onError(pino({ level: 'silent' })));
    app.get('/', () => {
      throw err;
    });
    const res = await app.request('/');
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    if (code === 'internal') expect(body.error.message).not.toContain('secret');
    else expect(body.error.message).toBe(err.message);
    for (const [k, v] of Object.entries(headers ?? {})) expect(res.headers.get(k)).toBe(v);
  });
});

/** A loopback port nothing listens on (bound, then released). */
async function unusedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** A real connect error: node-postgres against a loopback port nothing listens on. */
async function pgConnectError(port: number): Promise<Error> {
  const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/x` });
  try {
    return await pool.query('SELECT 1').then(
      () => new Error('connected?'),
      (e: Error) => e,
    );
  } finally {
    await pool.end();
  }
}

/** A real ioredis command failure: its reconnects to a port nothing listens on outlast maxRetriesPerRequest. */
async function redisCommandError(port: number): Promise<Error> {
  const redis = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  try {
    return await redis.get('k').then(
      () => new Error('answered?'),
      (e: Error) => e,
    );
  } finally {
    redis.disconnect();
  }
}

/** A server error as node-postgres parses it (pg-protocol's DatabaseError) with its SQLSTATE. */
function databaseError(code: string, message: string): Error {
  const e = new pg.DatabaseError(message, message.length, 'error');
  e.code = code;
  return e;
}

describe('onError: the router’s Postgres or Redis unavailable is a 503 `unavailable` naming it (table)', () => {
  // Ports nothing listens on: one stands for the router's Postgres, one for its Redis, one for neither.
  let pgPort = 0;
  let redisPort = 0;
  let otherPort = 0;
  const cases: Array<[string, () => Promise<Error> | Error, 'postgres' | 'redis' | undefined]> = [
    ['pg: connect refused (Postgres down)', () => pgConnectError(pgPort), 'postgres'],
    ['pg: connect refused elsewhere (not the router’s Postgres)', () => pgConnectError(otherPort), undefined],
    [
      'pg: 57P03 the database system is shutting down',
      () => databaseError('57P03', 'the database system is shutting down'),
      'postgres',
    ],
    [
      'pg: 57P01 terminating connection due to administrator command',
      () => databaseError('57P01', 'terminating connection due to administrator command'),
      'postgres',
    ],
    ['pg: 08006 connection failure', () => databaseError('08006', 'connection failure'), 'postgres'],
    [
      'pg: 53300 too many clients',
      () => databaseError('53300', 'sorry, too many clients already'),
      'postgres',
    ],
    [
      'pg: 42601 syntax error (a bug, not an outage)',
      () => databaseError('42601', 'syntax error at or near "x"'),
      undefined,
    ],
    ['pg: 23505 unique violation', () => databaseError('23505', 'duplicate key value'), undefined],
    [
      'pg: Connection terminated unexpectedly',
      () => new Error('Connection terminated unexpectedly'),
      'postgres',
    ],
    [
      'pg: a broken client',
      () => new Error('Client has encountered a connection error and is not queryable'),
      'postgres',
    ],
    ['pg: pool connect timeout', () => new Error('timeout exceeded when trying to connect'), 'postgres'],
    ['ioredis: max retries per request (Redis down)', () => redisCommandError(redisPort), 'redis'],
    ['ioredis: Connection is closed.', () => new Error('Connection is closed.'), 'redis'],
    [
      'wrapped: cause is a refused Postgres connect',
      async () => new Error('store failed', { cause: await pgConnectError(pgPort) }),
      'postgres',
    ],
    ['a TypeError (a bug)', () => new TypeError('x is undefined'), undefined],
  ];
  beforeAll(async () => {
    [pgPort, redisPort, otherPort] = [await unusedPort(), await unusedPort(), await unusedPort()];
  });
  it.each(cases)('%s', async (_name, make, dependency) => {
    const err = await make();
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const app = new Hono();
    app.onError(
      onError(log, {
        dependencies: {
          postgres: { host: '127.0.0.1', port: pgPort },
          redis: { host: '127.0.0.1', port: redisPort },
        },
      }),
    );
    app.get('/v1/previews/p1', () => {
      throw err;
    });
    const res = await app.request('/v1/previews/p1');
    const body = (await res.json()) as { error: { code: string; message: string } };
    if (!dependency) {
      expect([res.status, body.error.code]).toEqual([500, 'internal']);
      expect(res.headers.get('retry-after')).toBeNull();
      expect(lines.map((l) => l['msg'])).toEqual(['request failed']);
      return;
    }
    expect([res.status, body.error.code]).toEqual([503, 'unavailable']);
    expect(res.headers.get('retry-after')).toBe(String(DEPENDENCY_RETRY_AFTER_S));
    expect(body.error.message).toMatch(new RegExp(`^${dependency} is unavailable \\(`));
    expect(lines).toEqual([
      expect.objectContaining({
        msg: 'dependency unavailable',
        dependency,
        previewId: 'p1',
        path: '/v1/previews/p1',
      }),
    ]);
  });
});
