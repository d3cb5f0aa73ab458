import type { Redis } from 'ioredis';

/**
 * Named leases with a TTL, held by one owner token at a time; any replica may take one over once it
 * lapses. The owner renews every third of the TTL and stops acting at a safe margin before it could
 * lapse (see the sync hub's fencing in `sync/README.md`).
 *
 * @example
 * const leases = redis ? createRedisLeases({ redis, prefix }) : createMemoryLeases();
 * if (await leases.acquire(`rt-bridge:${previewId}`, token, 5000)) startBridge();
 */
export interface Leases {
  /** Takes the lease if it is free or already ours; returns whether we hold it now. */
  acquire(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Extends our lease; false when we no longer hold it (it lapsed or someone took over). */
  renew(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Who holds the lease now, if anyone. */
  holder(key: string): Promise<string | undefined>;
  /** Gives the lease up if we hold it. */
  release(key: string, owner: string): Promise<void>;
}

/** One process only (embedded default, a router without Redis). */
export function createMemoryLeases(now: () => number = Date.now): Leases {
  const leases = new Map<string, { owner: string; until: number }>();
  const live = (key: string) => {
    const l = leases.get(key);
    return l && l.until > now() ? l : undefined;
  };
  return {
    async acquire(key, owner, ttl) {
      const l = live(key);
      if (l && l.owner !== owner) return false;
      leases.set(key, { owner, until: now() + ttl });
      return true;
    },
    async renew(key, owner, ttl) {
      const l = live(key);
      if (!l || l.owner !== owner) return false;
      l.until = now() + ttl;
      return true;
    },
    async holder(key) {
      return live(key)?.owner;
    },
    async release(key, owner) {
      if (leases.get(key)?.owner === owner) leases.delete(key);
    },
  };
}

// KEYS[1] lease key; ARGV owner, ttl. Take if free or ours.
const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** Leases shared by every router replica: key `<prefix><key>`, value the owner token, PX TTL. */
export function createRedisLeases(options: { redis: Redis; prefix?: string }): Leases {
  const { redis } = options;
  const p = options.prefix ?? '';
  return {
    async acquire(key, owner, ttl) {
      return (await redis.eval(ACQUIRE, 1, `${p}${key}`, owner, String(ttl))) === 1;
    },
    async renew(key, owner, ttl) {
      return (await redis.eval(RENEW, 1, `${p}${key}`, owner, String(ttl))) === 1;
    },
    async holder(key) {
      return (await redis.get(`${p}${key}`)) ?? undefined;
    },
    async release(key, owner) {
      await redis.eval(RELEASE, 1, `${p}${key}`, owner);
    },
  };
}
