import type { BatchOrigin } from './wire.ts';

/** How a sandbox answered a batch the first time: applied, or refused with this code and message. */
export type OriginOutcome = { applied: true } | { applied: false; code: string; message: string };

interface ClientEntry {
  /** Highest seq of this client the sandbox processed (applied or refused). */
  seq: number;
  /** Refused seqs of this client (at most `maxRefused`, oldest dropped). */
  refused: Map<number, { code: string; message: string }>;
}

const APPLIED: OriginOutcome = { applied: true };

/**
 * The sandbox's record of which editor batches it has processed, keyed by `BatchOrigin`.
 *
 * The router's sync hub sends each editor batch to the sandbox under a per-preview seq. After an owner
 * failover the new owner may send a batch again under a new, higher seq (it cannot know whether the
 * old owner's send landed). Applying it twice is harmless for puts and deletes but wrong for a rename
 * whose source was written again since (`rename a→b; put a` then `rename a→b` again moves the new `a`).
 * A sandbox that checks `seen()` before applying answers such a batch as it did the first time.
 *
 * Batches of one client reach the sandbox in that client's seq order, so one high mark per client
 * is enough, plus the refused seqs (a refused batch re-sent must be refused again, not acked).
 *
 * `record()` returns a line that `restore()` reads back, for a sandbox that keeps the ledger in a
 * file across restarts; `snapshot()` is the compacted form of the whole ledger.
 *
 * @example
 * const ledger = new OriginLedger();
 * const before = batch.origin && ledger.seen(batch.origin);
 * if (before) return before.applied ? ack(batch.seq) : refuse(batch.seq, before);
 * apply(batch.ops);
 * if (batch.origin) log.append(ledger.record(batch.origin));
 */
export class OriginLedger {
  readonly #clients = new Map<string, ClientEntry>();
  readonly #maxClients: number;
  readonly #maxRefused: number;

  constructor(options: { maxClients?: number; maxRefused?: number } = {}) {
    this.#maxClients = options.maxClients ?? 1024;
    this.#maxRefused = options.maxRefused ?? 64;
  }

  /** The first answer when `origin` was processed before; `undefined` when it is new. */
  seen(origin: BatchOrigin): OriginOutcome | undefined {
    const c = this.#clients.get(origin.client);
    if (!c || origin.seq > c.seq) return undefined;
    const r = c.refused.get(origin.seq);
    return r ? { applied: false, ...r } : APPLIED;
  }

  /** Notes that `origin` was applied (or refused, with the error sent); returns the line for a log. */
  record(origin: BatchOrigin, refused?: { code: string; message: string }): string {
    this.#note(origin.client, origin.seq, refused);
    return `${JSON.stringify(refused ? [origin.client, origin.seq, refused.code, refused.message] : [origin.client, origin.seq])}\n`;
  }

  /** Clients tracked now. */
  get size(): number {
    return this.#clients.size;
  }

  /** The whole ledger as log lines, one per client mark and one per refused seq. */
  snapshot(): string {
    let out = '';
    for (const [client, c] of this.#clients) {
      out += `${JSON.stringify([client, c.seq])}\n`;
      for (const [seq, r] of c.refused) out += `${JSON.stringify([client, seq, r.code, r.message])}\n`;
    }
    return out;
  }

  /**
   * Reads lines written by `record()` or `snapshot()`. A line that does not parse (a torn last write)
   * is skipped; returns how many were skipped.
   */
  restore(text: string): number {
    let bad = 0;
    for (const line of text.split('\n')) {
      if (!line) continue;
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        bad++;
        continue;
      }
      if (
        !Array.isArray(v) ||
        typeof v[0] !== 'string' ||
        !Number.isSafeInteger(v[1]) ||
        (v.length !== 2 && (v.length !== 4 || typeof v[2] !== 'string' || typeof v[3] !== 'string'))
      ) {
        bad++;
        continue;
      }
      this.#note(
        v[0],
        v[1] as number,
        v.length === 4 ? { code: v[2] as string, message: v[3] as string } : undefined,
      );
    }
    return bad;
  }

  #note(client: string, seq: number, refused: { code: string; message: string } | undefined) {
    let c = this.#clients.get(client);
    if (c) this.#clients.delete(client);
    else {
      c = { seq: 0, refused: new Map() };
      if (this.#clients.size >= this.#maxClients)
        this.#clients.delete(this.#clients.keys().next().value as string);
    }
    // Re-inserted: the Map's order is the order clients were last heard from.
    this.#clients.set(client, c);
    if (seq > c.seq) c.seq = seq;
    if (refused) {
      c.refused.set(seq, refused);
      if (c.refused.size > this.#maxRefused) c.refused.delete(c.refused.keys().next().value as number);
    }
  }
}
