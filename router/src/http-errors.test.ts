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
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { onError } from './http-errors.ts';

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
