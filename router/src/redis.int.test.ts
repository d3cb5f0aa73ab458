import { createTestRedis } from '@preview/testkit';
import { expect, it } from 'vitest';

it('round-trips a value through the real Redis', async () => {
  const { redis, prefix, cleanup } = createTestRedis();
  try {
    await redis.set(`${prefix}k`, 'v', 'PX', 10_000);
    expect(await redis.get(`${prefix}k`)).toBe('v');
    expect(await redis.pttl(`${prefix}k`)).toBeGreaterThan(0);
  } finally {
    await cleanup();
  }
});
