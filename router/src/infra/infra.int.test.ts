import { createTestRedis } from '@preview/testkit';
import { describe, expect, it, vi } from 'vitest';
import { createMemoryLiveness, createRedisLiveness, type NodeLiveness } from './liveness.ts';
import { createMemoryPubSub, createRedisPubSub, type PubSub } from './pubsub.ts';
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from './rate-limit.ts';

const withRedis = async <T>(fn: (r: ReturnType<typeof createTestRedis>) => Promise<T>) => {
  const r = createTestRedis();
  try {
    return await fn(r);
  } finally {
    await r.cleanup();
  }
};

describe.each([
  ['in-process', async (fn: (l: RateLimiter) => Promise<void>) => fn(createMemoryRateLimiter())],
  [
    'Redis (one Lua script)',
    async (fn: (l: RateLimiter) => Promise<void>) =>
      withRedis((r) => fn(createRedisRateLimiter({ redis: r.redis, prefix: r.prefix }))),
  ],
] as const)('rate limiter: %s', (_name, run) => {
  it('allows `limit` requests, then refuses with a retry delay; keys are independent', () =>
    run(async (l) => {
      const got = [];
      for (let i = 0; i < 4; i++) got.push(await l.take('u:a', { limit: 3, windowMs: 60_000 }));
      expect(got.map((d) => d.allowed)).toEqual([true, true, true, false]);
      expect(got[3]!.retryAfterMs).toBeGreaterThan(0);
      expect(got[3]!.retryAfterMs).toBeLessThanOrEqual(20_000);
      expect((await l.take('u:b', { limit: 3, windowMs: 60_000 })).allowed).toBe(true);
    }));

  it('concurrent takes never over-grant', () =>
    run(async (l) => {
      const all = await Promise.all(
        Array.from({ length: 50 }, () => l.take('u:c', { limit: 10, windowMs: 60_000 })),
      );
      expect(all.filter((d) => d.allowed).length).toBe(10);
    }));
});

it('the Redis limiter sends its script by SHA-1, and loads it again when Redis lost it (NOSCRIPT)', () =>
  withRedis(async (r) => {
    const bySha = vi.spyOn(r.redis, 'evalsha');
    const whole = vi.spyOn(r.redis, 'eval');
    const l = createRedisRateLimiter({ redis: r.redis, prefix: r.prefix });
    await r.redis.script('FLUSH');
    const got = [];
    for (let i = 0; i < 3; i++) got.push((await l.take('u:s', { limit: 2, windowMs: 60_000 })).allowed);
    expect(got).toEqual([true, true, false]);
    expect(bySha).toHaveBeenCalledTimes(3);
    // Once at most: another test may have loaded the same script since the flush.
    expect(whole.mock.calls.length).toBeLessThanOrEqual(1);
    const [sha] = bySha.mock.calls[0] as unknown as [string];
    expect(await r.redis.script('EXISTS', sha)).toEqual([1]);
  }));

it('the in-process limiter refills over time', async () => {
  let now = 0;
  const l = createMemoryRateLimiter({ now: () => now });
  for (let i = 0; i < 2; i++) await l.take('k', { limit: 2, windowMs: 1000 });
  expect((await l.take('k', { limit: 2, windowMs: 1000 })).allowed).toBe(false);
  now = 600;
  expect((await l.take('k', { limit: 2, windowMs: 1000 })).allowed).toBe(true);
});

describe.each([
  [
    'in-process',
    async (fn: (l: NodeLiveness, expire: () => Promise<void>) => Promise<void>) => {
      let now = 0;
      await fn(createMemoryLiveness({ now: () => now }), async () => {
        now += 10_000;
      });
    },
  ],
  [
    'Redis node:<id> with TTL',
    async (fn: (l: NodeLiveness, expire: () => Promise<void>) => Promise<void>) =>
      withRedis(async (r) => {
        const l = createRedisLiveness({ redis: r.redis, prefix: r.prefix });
        await fn(l, async () => {
          await r.redis.pexpire(`${r.prefix}node:n1`, 1);
          while (await r.redis.exists(`${r.prefix}node:n1`)) await new Promise((x) => setTimeout(x, 5));
        });
      }),
  ],
] as const)('node liveness: %s', (_name, run) => {
  it('a beat makes a node alive until its TTL passes', () =>
    run(async (l, expire) => {
      expect(await l.isAlive('n1')).toBe(false);
      await l.beat(
        { nodeId: 'n1', capacity: { slots: 2, used: 1, warm: {} }, sessions: ['s1'], at: 1 },
        5_000,
      );
      expect(await l.isAlive('n1')).toBe(true);
      expect((await l.get('n1'))?.sessions).toEqual(['s1']);
      await expire();
      expect(await l.isAlive('n1')).toBe(false);
    }));

  it('keptSince: when the store began keeping beats (Redis: its start; in process: always)', () =>
    run(async (l) => {
      const since = await l.keptSince();
      expect(since).toBeLessThanOrEqual(Date.now());
      if (_name === 'in-process') expect(since).toBe(0);
      else {
        // The test Redis started before this test did, and after the epoch's first day.
        expect(since).toBeGreaterThan(24 * 3600_000);
        expect(since).toBeLessThanOrEqual(performance.timeOrigin + 1000);
      }
    }));
});

describe.each([
  [
    'in-process',
    async (fn: (a: PubSub, b: PubSub) => Promise<void>) => {
      const p = createMemoryPubSub();
      await fn(p, p);
    },
  ],
  [
    'Redis',
    async (fn: (a: PubSub, b: PubSub) => Promise<void>) =>
      withRedis(async (r) => {
        const a = createRedisPubSub({ redis: r.redis, prefix: r.prefix });
        const other = r.redis.duplicate();
        const b = createRedisPubSub({ redis: other, prefix: r.prefix });
        try {
          await fn(a, b);
        } finally {
          await a.close();
          await b.close();
          other.disconnect();
        }
      }),
  ],
] as const)('pub/sub: %s', (_name, run) => {
  it('delivers to every subscriber of a channel until unsubscribed', () =>
    run(async (a, b) => {
      const got: unknown[] = [];
      const off1 = await b.subscribe('events:x', (m) => got.push(['1', m]));
      const off2 = await b.subscribe('events:x', (m) => got.push(['2', m]));
      await a.publish('events:x', { n: 1 });
      await a.publish('events:y', { n: 9 });
      for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(got).toEqual([
        ['1', { n: 1 }],
        ['2', { n: 1 }],
      ]);
      await off1();
      await a.publish('events:x', { n: 2 });
      for (let i = 0; i < 100 && got.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
      expect(got.at(-1)).toEqual(['2', { n: 2 }]);
      expect(got.length).toBe(3);
      await off2();
    }));
});
