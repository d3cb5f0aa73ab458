import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

export interface RateDecision {
  allowed: boolean;
  /** Tokens left after this request. */
  remaining: number;
  /** When refused: how long until one token is back. */
  retryAfterMs: number;
}

/** A token bucket per key: `limit` tokens, refilled evenly over `windowMs`. */
export interface RateLimiter {
  take(key: string, options: { limit: number; windowMs: number }): Promise<RateDecision>;
  close(): Promise<void>;
}

// One atomic script: refill by elapsed time (Redis clock, so replicas agree), take one token or
// report when the next one arrives. State: hash {t = tokens, ts = last refill ms}.
const TOKEN_BUCKET_LUA = `
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate = limit / window
local state = redis.call('HMGET', key, 't', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = limit; ts = now end
tokens = math.min(limit, tokens + (now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', key, 't', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', key, window * 2)
return {allowed, math.floor(tokens), retry}
`;

const TOKEN_BUCKET_SHA = createHash('sha1').update(TOKEN_BUCKET_LUA).digest('hex');

/**
 * Redis token buckets, one Lua script per request (atomic across replicas). The script is called by
 * its SHA-1 (`EVALSHA`: ~40 bytes a request instead of the script's ~900, and no hashing of it by
 * Redis); when Redis does not have it yet (`NOSCRIPT`: first use, or after a restart or
 * `SCRIPT FLUSH`) the one call is sent with `EVAL`, which loads it (Redis docs: EVALSHA).
 *
 * @example
 * const limiter = createRedisRateLimiter({ redis, prefix: 'preview:' });
 * const d = await limiter.take(`user:${id}`, { limit: 600, windowMs: 60_000 });
 */
export function createRedisRateLimiter(options: { redis: Redis; prefix: string }): RateLimiter {
  const { redis, prefix } = options;
  return {
    async take(key, { limit, windowMs }) {
      const k = `${prefix}rl:${key}`;
      let out: unknown;
      try {
        out = await redis.evalsha(TOKEN_BUCKET_SHA, 1, k, limit, windowMs);
      } catch (e) {
        if (!String((e as Error).message).startsWith('NOSCRIPT')) throw e;
        out = await redis.eval(TOKEN_BUCKET_LUA, 1, k, limit, windowMs);
      }
      const [allowed, remaining, retry] = out as [number, number, number];
      return { allowed: allowed === 1, remaining, retryAfterMs: retry };
    },
    async close() {},
  };
}

/** The same token buckets in process memory (no Redis): one replica only. */
export function createMemoryRateLimiter(options: { now?: () => number } = {}): RateLimiter {
  const now = options.now ?? Date.now;
  const buckets = new Map<string, { tokens: number; ts: number; expires: number }>();
  return {
    async take(key, { limit, windowMs }) {
      const t = now();
      const rate = limit / windowMs;
      const b = buckets.get(key);
      let tokens = b && b.expires > t ? Math.min(limit, b.tokens + (t - b.ts) * rate) : limit;
      let allowed = false;
      let retry = 0;
      if (tokens >= 1) {
        tokens -= 1;
        allowed = true;
      } else retry = Math.ceil((1 - tokens) / rate);
      buckets.set(key, { tokens, ts: t, expires: t + windowMs * 2 });
      if (buckets.size > 100_000) for (const [k, v] of buckets) if (v.expires <= t) buckets.delete(k);
      return { allowed, remaining: Math.floor(tokens), retryAfterMs: retry };
    },
    async close() {
      buckets.clear();
    },
  };
}
