/**
 * Requests in flight, counted by the app port they went to, so a replaced process is stopped only
 * once it has answered what it took.
 */
export class InflightRequests {
  readonly #count = new Map<number, number>();
  readonly #waiters = new Map<number, () => void>();

  /** Counts a request to `appPort`; the returned function marks it done (call it once). */
  begin(appPort: number): () => void {
    this.#count.set(appPort, (this.#count.get(appPort) ?? 0) + 1);
    return () => {
      const n = (this.#count.get(appPort) ?? 1) - 1;
      if (n > 0) this.#count.set(appPort, n);
      else {
        this.#count.delete(appPort);
        this.#waiters.get(appPort)?.();
      }
    };
  }

  /** Requests in flight to `appPort`. */
  count(appPort: number): number {
    return this.#count.get(appPort) ?? 0;
  }

  /** Resolves when no request to `appPort` is in flight, or after `maxMs` ms. */
  drained(appPort: number, maxMs: number): Promise<void> {
    if (!this.#count.get(appPort)) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, maxMs);
      const waiters = this.#waiters;
      function done() {
        clearTimeout(t);
        waiters.delete(appPort);
        resolve();
      }
      waiters.set(appPort, done);
    });
  }
}
