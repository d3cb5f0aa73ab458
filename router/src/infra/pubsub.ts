import type { Redis } from 'ioredis';

/**
 * Cross-replica fan-out of small JSON messages: the sync hub's bus (`sync:<previewId>`), status and
 * log events (`events:<previewId>`). One interface, two implementations: in-process and Redis.
 *
 * Delivery is asynchronous in both (never inside `publish`), in publish order per channel, and a
 * message published after `subscribe` resolved reaches that subscriber.
 *
 * @example
 * const bus = redis ? createRedisPubSub({ redis, prefix }) : createMemoryPubSub();
 * const off = await bus.subscribe('sync:abc', (m) => console.log(m));
 * await bus.publish('sync:abc', { kind: 'owner', owner: 'r1#1' });
 * await off();
 */
export interface PubSub {
  /**
   * `message` is any JSON value. The in-process bus hands the same object to every subscriber: do not
   * mutate it. Subscribers parse what they receive (a Redis message comes from another process).
   */
  publish(channel: string, message: unknown): Promise<void>;
  /** Resolves once subscribed; returns the (repeat-safe) unsubscribe function. */
  subscribe(channel: string, listener: (message: unknown) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

type Listener = (message: unknown) => void;

/** Per-channel listener sets, shared by both implementations. */
class Listeners {
  readonly #byChannel = new Map<string, Set<Listener>>();

  /** Adds `l`; true when it is the channel's first listener. */
  add(channel: string, l: Listener): boolean {
    let set = this.#byChannel.get(channel);
    const first = !set;
    if (!set) {
      set = new Set();
      this.#byChannel.set(channel, set);
    }
    set.add(l);
    return first;
  }

  /** Removes `l`; true when the channel has no listener left. */
  remove(channel: string, l: Listener): boolean {
    const set = this.#byChannel.get(channel);
    if (!set) return false;
    set.delete(l);
    if (set.size > 0) return false;
    this.#byChannel.delete(channel);
    return true;
  }

  /** A copy: a listener that unsubscribes during delivery does not disturb the others. */
  of(channel: string): Listener[] {
    const set = this.#byChannel.get(channel);
    return set ? [...set] : [];
  }

  clear(): void {
    this.#byChannel.clear();
  }
}

function unsubscriber(off: () => Promise<void>): () => Promise<void> {
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    await off();
  };
}

/** In-process pub/sub (the embedded default with one replica, and tests). */
export function createMemoryPubSub(): PubSub {
  const listeners = new Listeners();
  return {
    async publish(channel, message) {
      // A microtask per delivery, like a message from Redis: a listener that publishes in turn is not
      // re-entered inside its own publish.
      for (const l of listeners.of(channel)) queueMicrotask(() => l(message));
    },
    async subscribe(channel, listener) {
      listeners.add(channel, listener);
      return unsubscriber(async () => {
        listeners.remove(channel, listener);
      });
    },
    async close() {
      listeners.clear();
    },
  };
}

/**
 * Redis pub/sub: publishes on `redis`, and receives on one duplicated connection per instance (a
 * subscribed connection can issue no other command), with local fan-out so a thousand SSE streams
 * cost one Redis subscription per channel. Channels are `<prefix>ps:<channel>` in Redis.
 */
export function createRedisPubSub(options: { redis: Redis; prefix?: string }): PubSub {
  const prefix = `${options.prefix ?? ''}ps:`;
  const pub = options.redis;
  // No ready check: a SUBSCRIBE queued before connect puts the connection in subscriber mode, where
  // the INFO of the ready check is refused. ioredis re-subscribes by itself after a reconnect.
  const sub = pub.duplicate({ enableReadyCheck: false });
  const listeners = new Listeners();
  // SUBSCRIBE in flight per key: a second subscriber waits for it too, so both are live on resolve.
  const subscribing = new Map<string, Promise<unknown>>();
  sub.on('message', (key: string, text: string) => {
    const ls = listeners.of(key);
    if (ls.length === 0) return;
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    for (const l of ls) l(message);
  });
  return {
    async publish(channel, message) {
      await pub.publish(prefix + channel, JSON.stringify(message));
    },
    async subscribe(channel, listener) {
      const key = prefix + channel;
      if (listeners.add(key, listener)) {
        const p = sub.subscribe(key).finally(() => subscribing.delete(key));
        subscribing.set(key, p);
      }
      await subscribing.get(key);
      return unsubscriber(async () => {
        if (listeners.remove(key, listener)) await sub.unsubscribe(key).catch(() => {});
      });
    },
    async close() {
      listeners.clear();
      sub.disconnect();
    },
  };
}
