import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';

/** A random key prefix so parallel tests never share keys. */
export function testRedisPrefix(): string {
  return `t:${randomBytes(6).toString('hex')}:`;
}

/**
 * A Redis client for tests; `cleanup()` deletes every key under `prefix` and quits.
 * @param options.url another Redis (e.g. a private `redis-server` a test restarts). @default TEST_REDIS_URL
 */
export function createTestRedis(options: { url?: string } = {}): {
  redis: Redis;
  prefix: string;
  cleanup(): Promise<void>;
} {
  const redis = new Redis(options.url ?? TEST_REDIS_URL, { maxRetriesPerRequest: 2, lazyConnect: false });
  // A test that restarts its Redis sees reconnect errors here; its commands still fail on their own.
  redis.on('error', () => {});
  const prefix = testRedisPrefix();
  return {
    redis,
    prefix,
    async cleanup() {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
      redis.disconnect();
    },
  };
}
