import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Cleanup } from './cleanup.ts';
import { defineConfig } from './config.ts';
import {
  CapacityError,
  ConfigError,
  ConflictError,
  errorFromHttp,
  ForbiddenError,
  httpStatusOf,
  InvalidInputError,
  isPreviewError,
  NotFoundError,
  PreviewError,
  TierUnavailableError,
  TimeoutError,
  UnauthorizedError,
} from './errors.ts';

describe('errors', () => {
  it('carry code, name and cause', () => {
    const cause = new Error('boom');
    const e = new TierUnavailableError('tier_unavailable', 'no node', { tier: 'docker', cause });
    expect(e).toBeInstanceOf(PreviewError);
    expect([e.name, e.code, e.tier, e.cause]).toEqual([
      'TierUnavailableError',
      'tier_unavailable',
      'docker',
      cause,
    ]);
    expect(new CapacityError('capacity', 'full', { retryAfterMs: 5 }).retryAfterMs).toBe(5);
    expect(new NotFoundError('not_found', 'x').code).toBe('not_found');
    expect(isPreviewError(new InvalidInputError('a', 'b'))).toBe(true);
    expect(isPreviewError(new Error('x'))).toBe(false);
  });
});

describe('one error shape', () => {
  it('every class takes (code, message, options) and keeps each as given', () => {
    const cause = new Error('under');
    const cases: Array<[PreviewError, string]> = [
      [new PreviewError('odd', 'm', { cause }), 'PreviewError'],
      [new InvalidInputError('invalid_path', 'm', { cause }), 'InvalidInputError'],
      [new ConfigError('invalid_config', 'm', { cause }), 'ConfigError'],
      [new NotFoundError('ended', 'm', { cause }), 'NotFoundError'],
      [new ForbiddenError('not_owner', 'm', { cause }), 'ForbiddenError'],
      [new UnauthorizedError('bad_token', 'm', { cause }), 'UnauthorizedError'],
      [new ConflictError('stale_seq', 'm', { cause }), 'ConflictError'],
      [new CapacityError('rate_limited', 'm', { cause, retryAfterMs: 2000 }), 'CapacityError'],
      [new TierUnavailableError('fly_down', 'm', { cause, tier: 'fly' }), 'TierUnavailableError'],
      [new TimeoutError('ack_timeout', 'm', { cause }), 'TimeoutError'],
    ];
    for (const [e, name] of cases) {
      expect([e.name, e.code.length > 0, e.message, e.cause]).toEqual([name, true, 'm', cause]);
    }
    expect(cases.map(([e]) => e.code)).toEqual([
      'odd',
      'invalid_path',
      'invalid_config',
      'ended',
      'not_owner',
      'bad_token',
      'stale_seq',
      'rate_limited',
      'fly_down',
      'ack_timeout',
    ]);
    const [capacity, tier] = [cases[7]?.[0], cases[8]?.[0]];
    expect(capacity instanceof CapacityError && capacity.retryAfterMs).toBe(2000);
    expect(tier instanceof TierUnavailableError && tier.tier).toBe('fly');
  });
});

describe('errorFromHttp', () => {
  it('turns each error answer back into the error it was raised as, keeping code and message', () => {
    const body = (code: string) => ({ error: { code, message: `${code}!` } });
    const cases: Array<[number, string, new (...a: never[]) => PreviewError]> = [
      [400, 'invalid_path', InvalidInputError],
      [422, 'invalid_input', InvalidInputError],
      [401, 'unauthorized', UnauthorizedError],
      [403, 'forbidden', ForbiddenError],
      [404, 'not_found', NotFoundError],
      [410, 'ended', NotFoundError],
      [409, 'conflict', ConflictError],
      [429, 'rate_limited', CapacityError],
      [503, 'capacity', CapacityError],
      [503, 'tier_unavailable', TierUnavailableError],
      [504, 'timeout', TimeoutError],
      [408, 'timeout', TimeoutError],
      [500, 'internal', TierUnavailableError],
    ];
    for (const [status, code, type] of cases) {
      const e = errorFromHttp(status, body(code), 'docker');
      expect([status, e.code, e.message, e instanceof type]).toEqual([status, code, `${code}!`, true]);
    }
    expect((errorFromHttp(503, body('tier_unavailable'), 'docker') as TierUnavailableError).tier).toBe(
      'docker',
    );
  });

  it('reads Retry-After of a 429, and copes with a body that is not ours', () => {
    expect((errorFromHttp(429, {}, 'router', '7') as CapacityError).retryAfterMs).toBe(7000);
    expect((errorFromHttp(429, {}, 'router', null) as CapacityError).retryAfterMs).toBeUndefined();
    const odd = errorFromHttp(418, '<html>', 'router');
    expect([odd.constructor, odd.code, odd.message]).toEqual([
      PreviewError,
      'http_418',
      'router answered HTTP 418',
    ]);
    expect(errorFromHttp(400, { error: { code: 7 } }, 'router').code).toBe('http_400');
  });
});

describe('httpStatusOf', () => {
  it('gives each class its status, and errorFromHttp reads it back as the same class', () => {
    const errors = [
      new InvalidInputError('invalid_body', 'x'),
      new UnauthorizedError('unauthorized', 'x'),
      new ForbiddenError('forbidden', 'x'),
      new NotFoundError('not_found', 'x'),
      new ConflictError('conflict', 'x'),
      new CapacityError('capacity', 'x'),
      new TierUnavailableError('tier_unavailable', 'x', { tier: 'docker' }),
      new TimeoutError('timeout', 'x'),
    ];
    for (const e of errors) {
      const back = errorFromHttp(
        httpStatusOf(e, { capacity: 503, other: 502 }),
        { error: { code: e.code, message: 'x' } },
        'docker',
      );
      expect([e.name, back.constructor]).toEqual([e.name, e.constructor]);
    }
    expect(httpStatusOf(new CapacityError('capacity', 'x'), { capacity: 429, other: 500 })).toBe(429);
    expect(httpStatusOf(new PreviewError('odd', 'x'), { capacity: 429, other: 500 })).toBe(500);
    expect(httpStatusOf(new PreviewError('odd', 'x'), { capacity: 503, other: 502 })).toBe(502);
  });
});

describe('defineConfig', () => {
  const load = defineConfig(
    z.object({ PORT: z.coerce.number().int().min(1).max(65535).default(8080), NAME: z.string() }),
  );
  it('parses, defaults and treats empty as unset', () => {
    expect(load({ NAME: 'a', PORT: '' })).toEqual({ NAME: 'a', PORT: 8080 });
  });
  it('names every bad variable', () => {
    expect(() => load({ PORT: '99999' })).toThrow(/PORT: .*NAME: /s);
  });
});

describe('Cleanup', () => {
  it('runs steps once in reverse and gathers failures', async () => {
    const order: number[] = [];
    const c = new Cleanup();
    c.add(() => order.push(1));
    c.add(() => {
      throw new Error('two');
    });
    c.add(async () => order.push(3));
    await expect(c.run()).rejects.toBeInstanceOf(AggregateError);
    expect(order).toEqual([3, 1]);
    await c.run();
    expect(order).toEqual([3, 1]);
  });
});
