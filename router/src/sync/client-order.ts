import type { FileOp } from '@preview/tiers';

/**
 * The client id of batches that come over HTTP (`PUT /v1/previews/:id/files`). Its seqs must
 * increase but may skip (each request names its own); an editor cannot take this id.
 */
export const HTTP_CLIENT = 'http';

/** An editor batch at the owner: client, the client's own seq, ops (`null`: refused at the edge). */
export interface ClientBatch {
  client: string;
  seq: number;
  ops: FileOp[] | null;
}

/**
 * One editor client's progress at the owner, and the order its batches are processed in.
 *
 * The owner requires each editor client's seqs to arrive contiguously. A batch that arrives ahead of
 * a gap (its predecessor was forwarded to an owner that went away) is held until the gap fills; after
 * `gapMs` the client's editors are told to reconnect and replay (`stuck`). The HTTP client's seqs
 * (`increasing`) only have to increase: nothing is held, and a seq at or below `sent` is stale.
 *
 * The marks only rise: `sent` ≥ `applied` ≥ `enqueued` ≥ `persisted` does not hold in general
 * (a refused batch is applied and enqueued without being sent), but each one is monotonic.
 *
 * @example
 * const order = new ClientOrder({ applied: 3, persisted: 2 });
 * order.admit(batch, Date.now(), (b) => owner.processInOrder(order, b));
 */
export class ClientOrder {
  /** Highest client seq sent to the sandbox (by us or, as far as we know, a previous owner). */
  sent: number;
  /** Highest client seq the sandbox acked `applied` (or refused). */
  applied: number;
  /** Highest client seq queued for persistence. */
  enqueued: number;
  /** Highest client seq committed to Postgres. */
  persisted: number;
  /** Batches that arrived ahead of a gap, by seq. */
  readonly held = new Map<number, ClientBatch>();
  /** When the current gap was first seen (0: no gap). */
  gapSince = 0;
  /** Seqs may skip (the HTTP client): no batch is held for a gap. */
  readonly increasing: boolean;

  constructor(marks: { applied: number; persisted: number; increasing?: boolean }) {
    this.increasing = marks.increasing ?? false;
    this.persisted = marks.persisted;
    this.applied = Math.max(marks.applied, marks.persisted);
    this.sent = this.applied;
    this.enqueued = marks.persisted;
  }

  /**
   * Takes batch `b`: when it is next in order (or a duplicate), `handle` gets it and then every held
   * batch that now follows; otherwise it is held. `handle` must raise `sent` for a new batch.
   */
  admit(b: ClientBatch, now: number, handle: (b: ClientBatch) => void): void {
    if (b.seq > this.sent + 1 && !this.increasing) {
      this.held.set(b.seq, b);
      if (!this.gapSince) this.gapSince = now;
      return;
    }
    handle(b);
    let next = this.held.get(this.sent + 1);
    while (next) {
      this.held.delete(next.seq);
      handle(next);
      next = this.held.get(this.sent + 1);
    }
    // Anything left at or below `sent` is a duplicate.
    for (const k of this.held.keys()) if (k <= this.sent) this.held.delete(k);
    this.gapSince = this.held.size ? this.gapSince || now : 0;
  }

  /** True (once per `gapMs`) when a gap has lasted longer than `gapMs`. */
  stuck(now: number, gapMs: number): boolean {
    if (!this.gapSince || now - this.gapSince <= gapMs) return false;
    this.gapSince = now;
    return true;
  }

  raiseApplied(seq: number): void {
    if (seq > this.applied) this.applied = seq;
  }

  /** Marks `seq` as queued for persistence; false when it already was. */
  enqueue(seq: number): boolean {
    if (seq <= this.enqueued) return false;
    this.enqueued = seq;
    return true;
  }

  raisePersisted(seq: number): void {
    if (seq > this.persisted) this.persisted = seq;
  }
}
