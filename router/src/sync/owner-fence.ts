import type { FileOp } from '@preview/tiers';

/** What the hub reads the time from (`Date` in production). */
export interface Clock {
  now(): number;
}

/** Fraction of the lease TTL during which an owner acts on it (the rest is the clock-skew/latency margin). */
export const LEASE_SAFETY = 0.7;

/**
 * The owner's local-clock fence on its lease: it acts as owner (sends to the sandbox, COMMITs) only
 * before `heldUntil`, a safe margin before the lease can expire in Redis, measured from when the
 * acquire/renew request was *sent*. A replica that stalls past it stops writing before another
 * replica can take the lease over.
 *
 * @example
 * const fence = new OwnerFence({ leaseMs: 5000, clock: Date, renew: () => state.renew(id, token, 5000), onLost });
 * fence.held(t0);
 * if (!fence.valid() && !(await fence.renewNow())) return;
 */
export class OwnerFence {
  #heldUntil = 0;
  #renewing: Promise<boolean> | undefined;
  readonly #o: { leaseMs: number; clock: Clock; renew(): Promise<boolean>; onLost(): void };

  constructor(o: {
    leaseMs: number;
    clock: Clock;
    /** Extends the lease; false when someone else holds it now. */
    renew(): Promise<boolean>;
    /** The lease is gone: step down. */
    onLost(): void;
  }) {
    this.#o = o;
  }

  valid(): boolean {
    return this.#o.clock.now() < this.#heldUntil;
  }

  /** The lease was acquired or renewed by a request sent at `t0`. */
  held(t0: number): void {
    this.#heldUntil = t0 + this.#o.leaseMs * LEASE_SAFETY;
  }

  /** Renews now (when the fence ran out before the timer did); one renewal in flight at a time. */
  renewNow(): Promise<boolean> {
    if (!this.#renewing) {
      const t0 = this.#o.clock.now();
      this.#renewing = this.#o
        .renew()
        .then((ok) => {
          if (ok) this.held(t0);
          else this.#o.onLost();
          return ok;
        })
        .finally(() => {
          this.#renewing = undefined;
        });
    }
    return this.#renewing;
  }
}

/** A batch sent to the sandbox under global `seq`, of editor client `client` (its own `clientSeq`). */
export interface Inflight {
  seq: number;
  client: string;
  clientSeq: number;
  ops: FileOp[];
}

/**
 * Batches the owner sent to the sandbox and the sandbox has not answered yet, in seq order (resent
 * in that order on a new channel), plus the origin of recently acked ones (so a late `hmr` event
 * for a global seq reaches the right editor under its own seq).
 */
export class InflightBatches {
  readonly #inflight = new Map<number, Inflight>();
  readonly #recent = new Map<number, { client: string; clientSeq: number }>();
  readonly #maxRecent: number;

  constructor(o: { maxRecent?: number } = {}) {
    this.#maxRecent = o.maxRecent ?? 1024;
  }

  get size(): number {
    return this.#inflight.size;
  }

  add(f: Inflight): void {
    this.#inflight.set(f.seq, f);
  }

  /** In send order. */
  values(): IterableIterator<Inflight> {
    return this.#inflight.values();
  }

  /**
   * The sandbox acked `seq`: acks come in order, so everything up to it is done. Returns those
   * batches, oldest first.
   */
  ackUpTo(seq: number): Inflight[] {
    const done: Inflight[] = [];
    for (const [s, f] of this.#inflight) {
      if (s > seq) break;
      this.#inflight.delete(s);
      this.#remember(f);
      done.push(f);
    }
    return done;
  }

  /** The sandbox refused `seq`: returns that batch (no longer in flight), if it was. */
  refuse(seq: number): Inflight | undefined {
    const f = this.#inflight.get(seq);
    if (f) this.#inflight.delete(seq);
    return f;
  }

  /** Which editor batch global `seq` was, while in flight or recently acked. */
  originOf(seq: number): { client: string; clientSeq: number } | undefined {
    return this.#recent.get(seq) ?? this.#inflight.get(seq);
  }

  #remember(f: Inflight): void {
    this.#recent.set(f.seq, { client: f.client, clientSeq: f.clientSeq });
    if (this.#recent.size > this.#maxRecent) this.#recent.delete(this.#recent.keys().next().value as number);
  }
}
