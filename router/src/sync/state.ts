import type { Redis } from 'ioredis';
import { createMemoryLeases, createRedisLeases } from '../infra/lease.ts';

/** Per-client progress on one preview: highest client seq applied in the sandbox / persisted in Postgres. */
export interface Watermarks {
  applied: number;
  persisted: number;
}

/**
 * Shared coordination state of the sync hub: who owns a preview's sandbox channel (a lease with a
 * TTL that any replica may take over when it lapses), the preview's global sequence counter, and each
 * editor client's watermarks (used to de-duplicate replays across replicas).
 *
 * @example
 * const state = createRedisSyncState({ redis, prefix: 'prod:' });
 * if (await state.acquire(previewId, replicaId, 5000)) { ... }
 */
export interface SyncState {
  /** Takes the lease if it is free or already ours; returns whether we hold it now. */
  acquire(previewId: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Extends our lease; false when we no longer hold it (someone took over). */
  renew(previewId: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Who holds the lease now, if anyone. */
  holder(previewId: string): Promise<string | undefined>;
  /** Gives the lease up if we hold it. */
  release(previewId: string, owner: string): Promise<void>;
  /** Reserves `n` sequence numbers; returns the first. Strictly increasing across owners. */
  reserveSeqs(previewId: string, n: number, floor: number): Promise<number>;
  getWatermarks(previewId: string, clientId: string): Promise<Watermarks>;
  setWatermark(
    previewId: string,
    clientId: string,
    stage: 'applied' | 'persisted',
    seq: number,
  ): Promise<void>;
  close(): Promise<void>;
}

/**
 * Where a preview's seq counter starts above its floor when there is none (first use, or Redis lost
 * it). The floor is the last *persisted* seq, and the sandbox may have applied later ones that were
 * not persisted yet; a new seq at or below one the sandbox applied would be taken there for a
 * replaced owner's late batch and get no answer.
 */
export const FRESH_COUNTER_GAP = 1_000_000;

/** One process only (embedded default, unit tests). */
export function createMemorySyncState(): SyncState {
  const leases = createMemoryLeases();
  const seqs = new Map<string, number>();
  const marks = new Map<string, Watermarks>();
  const key = (id: string) => `sync-owner:${id}`;
  return {
    acquire: (id, owner, ttl) => leases.acquire(key(id), owner, ttl),
    renew: (id, owner, ttl) => leases.renew(key(id), owner, ttl),
    holder: (id) => leases.holder(key(id)),
    release: (id, owner) => leases.release(key(id), owner),
    async reserveSeqs(id, n, floor) {
      const next = Math.max(seqs.get(id) ?? floor + FRESH_COUNTER_GAP, floor) + n;
      seqs.set(id, next);
      return next - n + 1;
    },
    async getWatermarks(id, client) {
      return { ...(marks.get(`${id}/${client}`) ?? { applied: 0, persisted: 0 }) };
    },
    async setWatermark(id, client, stage, seq) {
      const k = `${id}/${client}`;
      const m = marks.get(k) ?? { applied: 0, persisted: 0 };
      if (seq > m[stage]) m[stage] = seq;
      if (m.persisted > m.applied) m.applied = m.persisted;
      marks.set(k, m);
    },
    async close() {},
  };
}

// KEYS[1] counter; ARGV n, floor, gap. Raise to floor first (a fresh Redis after a flush must not go
// back); a missing counter starts `gap` above the floor (FRESH_COUNTER_GAP).
const RESERVE = `
local raw = redis.call('GET', KEYS[1])
local floor = tonumber(ARGV[2])
local cur = floor + tonumber(ARGV[3])
if raw then cur = tonumber(raw) end
if cur < floor then cur = floor end
local nxt = cur + tonumber(ARGV[1])
redis.call('SET', KEYS[1], nxt)
return nxt`;
// KEYS[1] hash; ARGV field, seq, ttl seconds. Only ever raises a watermark.
const RAISE = `
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1`;

/**
 * Redis-backed state shared by all router replicas. Keys: `sync-owner:<previewId>` (lease, PX TTL),
 * `sync-seq:<previewId>` (counter), `sync-client:<previewId>` (hash `<clientId>:a` / `<clientId>:p`).
 */
export function createRedisSyncState(options: {
  redis: Redis;
  prefix?: string;
  /** How long client watermarks are kept after the last write. */
  watermarkTtlSeconds?: number;
}): SyncState {
  const { redis } = options;
  const p = options.prefix ?? '';
  const ttlS = String(options.watermarkTtlSeconds ?? 7 * 24 * 3600);
  const leases = createRedisLeases({ redis, prefix: p });
  const key = (id: string) => `sync-owner:${id}`;
  return {
    acquire: (id, owner, ttl) => leases.acquire(key(id), owner, ttl),
    renew: (id, owner, ttl) => leases.renew(key(id), owner, ttl),
    holder: (id) => leases.holder(key(id)),
    release: (id, owner) => leases.release(key(id), owner),
    async reserveSeqs(id, n, floor) {
      const next = Number(
        await redis.eval(
          RESERVE,
          1,
          `${p}sync-seq:${id}`,
          String(n),
          String(floor),
          String(FRESH_COUNTER_GAP),
        ),
      );
      return next - n + 1;
    },
    async getWatermarks(id, client) {
      const [a, q] = await redis.hmget(`${p}sync-client:${id}`, `${client}:a`, `${client}:p`);
      const persisted = Number(q ?? 0);
      return { applied: Math.max(Number(a ?? 0), persisted), persisted };
    },
    async setWatermark(id, client, stage, seq) {
      await redis.eval(
        RAISE,
        1,
        `${p}sync-client:${id}`,
        `${client}:${stage === 'applied' ? 'a' : 'p'}`,
        String(seq),
        ttlS,
      );
    },
    async close() {},
  };
}
