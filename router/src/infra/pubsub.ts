import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';

/** Cross-replica fan-out of small JSON messages (status, logs). */
export interface PubSub {
  publish(channel: string, message: unknown): Promise<void>;
  /** Resolves once subscribed; returns the unsubscribe function. */
  subscribe(channel: string, listener: (message: unknown) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** In-process pub/sub (embedded mode, one replica). */
export function createMemoryPubSub(): PubSub {
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  return {
    async publish(channel, message) {
      bus.emit(channel, message);
    },
    async subscribe(channel, listener) {
      bus.on(channel, listener);
      return async () => {
        bus.off(channel, listener);
      };
    },
    async close() {
      bus.removeAllListeners();
    },
  };
}

/**
 * Redis pub/sub: one publishing connection and one subscriber connection per replica, with local
 * fan-out so a thousand SSE streams cost one Redis subscription per channel.
 */
export function createRedisPubSub(options: { redis: Redis; prefix: string }): PubSub {
  const pub = options.redis;
  const sub = pub.duplicate();
  const local = new EventEmitter();
  local.setMaxListeners(0);
  const counts = new Map<string, number>();
  sub.on('message', (ch: string, text: string) => {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    local.emit(ch, msg);
  });
  const key = (c: string) => `${options.prefix}ps:${c}`;
  return {
    async publish(channel, message) {
      await pub.publish(key(channel), JSON.stringify(message));
    },
    async subscribe(channel, listener) {
      const k = key(channel);
      local.on(k, listener);
      const n = (counts.get(k) ?? 0) + 1;
      counts.set(k, n);
      if (n === 1) await sub.subscribe(k);
      let done = false;
      return async () => {
        if (done) return;
        done = true;
        local.off(k, listener);
        const left = (counts.get(k) ?? 1) - 1;
        if (left <= 0) {
          counts.delete(k);
          await sub.unsubscribe(k).catch(() => {});
        } else counts.set(k, left);
      };
    },
    async close() {
      local.removeAllListeners();
      sub.disconnect();
    },
  };
}
