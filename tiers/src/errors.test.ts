import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Cleanup } from './cleanup.ts';
import { defineConfig } from './config.ts';
import {
  CapacityError,
  InvalidInputError,
  isPreviewError,
  NotFoundError,
  PreviewError,
  TierUnavailableError,
} from './errors.ts';

describe('errors', () => {
  it('carry code, name and cause', () => {
    const cause = new Error('boom');
    const e = new TierUnavailableError('docker', 'no node', { cause });
    expect(e).toBeInstanceOf(PreviewError);
    expect([e.name, e.code, e.tier, e.cause]).toEqual([
      'TierUnavailableError',
      'tier_unavailable',
      'docker',
      cause,
    ]);
    expect(new CapacityError('full', { retryAfterMs: 5 }).retryAfterMs).toBe(5);
    expect(new NotFoundError('x').code).toBe('not_found');
    expect(isPreviewError(new InvalidInputError('a', 'b'))).toBe(true);
    expect(isPreviewError(new Error('x'))).toBe(false);
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
