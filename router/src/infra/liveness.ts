import type { Redis } from 'ioredis';

export interface NodeBeat {
  nodeId: string;
  capacity: { slots: number; used: number; warm: Record<string, number> };
  sessions: string[];
  at: number;
}

/** Node liveness with a TTL: a node is alive while its last heartbeat has not expired. */
export interface NodeLiveness {
  beat(beat: NodeBeat, ttlMs: number): Promise<void>;
  get(nodeId: string): Promise<NodeBeat | undefined>;
  isAlive(nodeId: string): Promise<boolean>;
  forget(nodeId: string): Promise<void>;
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
  };
}
