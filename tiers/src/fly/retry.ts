/**
 * Retry timing for the Machines API: exponential backoff with full jitter, and `Retry-After` honoured
 * when the server sends it.
 *
 * @example
 * const ms = backoffDelay({ attempt: 2, baseMs: 200, capMs: 5_000, random: Math.random }); // in [0, 800]
 */
export interface BackoffOptions {
  /** 0 for the first retry. */
  attempt: number;
  baseMs: number;
  capMs: number;
  /** A uniform random number in [0, 1). Injected so tests can check the bounds. */
  random: () => number;
  /** Server-sent delay; when present the wait is at least this, plus up to `baseMs` of jitter. */
  retryAfterMs?: number | undefined;
}

/** Full jitter: uniform in [0, min(cap, base·2^attempt)]; with Retry-After: [retryAfter, retryAfter + base]. */
export function backoffDelay(o: BackoffOptions): number {
  const r = Math.min(Math.max(o.random(), 0), 1);
  if (o.retryAfterMs !== undefined && o.retryAfterMs >= 0) {
    return Math.min(o.retryAfterMs, o.capMs * 12) + Math.floor(r * o.baseMs);
  }
  const ceiling = Math.min(o.capMs, o.baseMs * 2 ** o.attempt);
  return Math.floor(r * ceiling);
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date. Undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** Sleeps `ms`, rejecting with the signal's reason if it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
