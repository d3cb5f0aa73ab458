import type { Redis } from 'ioredis';

export interface NodeBeat {
  nodeId: string;
  capacity: { slots: number; used: number; warm: Record<string, number> };
  /** The previews the node holds (its heartbeat's list); empty, and not yet known, when `registered`. */
  sessions: string[];
  /** When the node took this beat, ms since the epoch. */
  at: number;
  /** Written by a registration, before the node's first heartbeat: `sessions` says nothing yet. */
  registered?: true;
}

/** Node liveness with a TTL: a node is alive while its last heartbeat has not expired. */
export interface NodeLiveness {
  beat(beat: NodeBeat, ttlMs: number): Promise<void>;
  get(nodeId: string): Promise<NodeBeat | undefined>;
  isAlive(nodeId: string): Promise<boolean>;
  forget(nodeId: string): Promise<void>;
  /**
   * Since when (ms since the epoch) this store has been keeping beats. A node without a beat is known
   * to be dead only once this lies a node TTL back: a Redis that restarted has lost every beat, and
   * the nodes put theirs back within a heartbeat. Redis: when the server started (`INFO server`
   * `uptime_in_seconds`); in process: 0 (the beats live exactly as long as the router that takes them).
   */
  keptSince(): Promise<number>;
}

/** `node:<id>` keys with PX expiry. */
export function createRedisLiveness(options: { redis: Redis; prefix: string }): NodeLiveness {
  const { redis, prefix } = options;
  const key = (id: string) => `${prefix}node:${id}`;
  return {
    async beat(beat, ttlMs) {
      await redis.set(key(beat.nodeId), JSON.stringify(beat), 'PX', ttlMs);
    },
    async get(nodeId) {
      const v = await redis.get(key(nodeId));
      return v ? (JSON.parse(v) as NodeBeat) : undefined;
    },
    async isAlive(nodeId) {
      return (await redis.exists(key(nodeId))) === 1;
    },
    async forget(nodeId) {
      await redis.del(key(nodeId));
    },
    async keptSince() {
      const info = await redis.info('server');
      const uptime = /^uptime_in_seconds:(\d+)/m.exec(info)?.[1];
      // An answer without the field (a proxy in front of Redis): assume it kept everything.
      return uptime === undefined ? 0 : Date.now() - Number(uptime) * 1000;
    },
  };
}

/** The same with an in-process map (no Redis). */
export function createMemoryLiveness(options: { now?: () => number } = {}): NodeLiveness {
  const now = options.now ?? Date.now;
  const beats = new Map<string, { beat: NodeBeat; expires: number }>();
  const live = (id: string) => {
    const e = beats.get(id);
    if (e && e.expires > now()) return e.beat;
    beats.delete(id);
    return undefined;
  };
  return {
    async beat(beat, ttlMs) {
      beats.set(beat.nodeId, { beat, expires: now() + ttlMs });
    },
    async get(nodeId) {
      return live(nodeId);
    },
    async isAlive(nodeId) {
      return live(nodeId) !== undefined;
    },
    async forget(nodeId) {
      beats.delete(nodeId);
    },
    async keptSince() {
      return 0;
    },
  };
}
