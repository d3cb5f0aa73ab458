import type { Redis } from 'ioredis';

/**
 * Cross-replica message bus for the sync hub. `subscribe` resolves once the subscription is active,
 * so a message published after it resolves is delivered.
 *
 * @example
 * const bus = createRedisPubSub({ redis });
 * const off = await bus.subscribe('sync:abc', (m) => console.log(m));
 * await bus.publish('sync:abc', { k: 'o' });
 */
export interface PubSub {
  /** `message` is any JSON value; the in-process bus hands the same object to subscribers (do not mutate it). */
  publish(channel: string, message: unknown): Promise<void>;
  subscribe(channel: string, handler: (message: unknown) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** One process only: the embedded default and unit tests. */
export function createMemoryPubSub(): PubSub {
  const subs = new Map<string, Set<(m: unknown) => void>>();
  return {
    async publish(channel, message) {
      const set = subs.get(channel);
      if (!set) return;
      for (const h of [...set]) queueMicrotask(() => h(message));
    },
    async subscribe(channel, handler) {
      let set = subs.get(channel);
      if (!set) {
        set = new Set();
        subs.set(channel, set);
      }
      set.add(handler);
      return async () => {
        set.delete(handler);
        if (set.size === 0) subs.delete(channel);
      };
    },
    async close() {
      subs.clear();
    },
  };
}

/**
 * Redis pub/sub. Publishing uses `redis`; subscriptions use one duplicated connection (a subscribed
 * Redis connection can issue no other commands). Channel names get `prefix` prepended.
 */
export function createRedisPubSub(options: { redis: Redis; prefix?: string }): PubSub {
  const prefix = options.prefix ?? '';
  const pub = options.redis;
  // No ready check: a SUBSCRIBE queued before connect puts the connection in subscriber mode, where
  // the INFO of the ready check is refused.
  const sub = pub.duplicate({ enableReadyCheck: false });
  const handlers = new Map<string, Set<(m: unknown) => void>>();
  sub.on('message', (channel: string, message: string) => {
    const set = handlers.get(channel);
    if (!set) return;
    let value: unknown;
    try {
      value = JSON.parse(message);
    } catch {
      return;
    }
    for (const h of set) h(value);
  });
  // ioredis re-subscribes by itself after a reconnect (autoResubscribe defaults to true).
  return {
    async publish(channel, message) {
      await pub.publish(prefix + channel, JSON.stringify(message));
    },
    async subscribe(channel, handler) {
      const key = prefix + channel;
      let set = handlers.get(key);
      if (!set) {
        set = new Set();
        handlers.set(key, set);
        await sub.subscribe(key);
      }
      set.add(handler);
      return async () => {
        set.delete(handler);
        if (set.size === 0 && handlers.get(key) === set) {
          handlers.delete(key);
          await sub.unsubscribe(key).catch(() => {});
        }
      };
    },
    async close() {
      handlers.clear();
      sub.disconnect();
    },
  };
}
