/**
 * Counts requests a fetch handler is still answering, so a shutdown can wait for them (a create
 * half-way through its placement) before it closes the pool they write with.
 */
export interface InflightTracker<A extends unknown[], R> {
  /** The handler, counting each call from its start until its answer (headers) is ready. */
  fetch(...args: A): Promise<Awaited<R>>;
  /** Requests being answered now. */
  readonly size: number;
  /**
   * Settles once no request is being answered, or after `timeoutMs`.
   * @returns true when they all finished, false when the time ran out first
   */
  drained(timeoutMs: number): Promise<boolean>;
}

/**
 * Wraps `handler` (e.g. `app.fetch` given to `serve`). A streamed answer (SSE, a proxied body)
 * counts until its headers are ready, not while it streams: those are cut when the server closes.
 *
 * @example
 * const inflight = trackInflight(router.app.fetch);
 * serve({ fetch: inflight.fetch });
 * // on SIGTERM: server.close(); await inflight.drained(10_000); then close the pool
 */
export function trackInflight<A extends unknown[], R>(handler: (...args: A) => R): InflightTracker<A, R> {
  let size = 0;
  const waiters = new Set<() => void>();
  return {
    async fetch(...args: A): Promise<Awaited<R>> {
      size++;
      try {
        return await handler(...args);
      } finally {
        if (--size === 0) for (const w of [...waiters]) w();
      }
    },
    get size() {
      return size;
    },
    drained(timeoutMs) {
      if (size === 0) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const done = (ok: boolean) => {
          clearTimeout(timer);
          waiters.delete(onIdle);
          resolve(ok);
        };
        const onIdle = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        waiters.add(onIdle);
      });
    },
  };
}
