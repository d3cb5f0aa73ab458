import {
  type Ack,
  ConflictError,
  InvalidInputError,
  type PreviewError,
  type ServerFrame,
  TierUnavailableError,
} from '@preview/tiers';
import type { Forwarded } from './editor-socket.ts';

/** What a batch submitted over HTTP resolves with: the sandbox applied it, and it is in `project_files`. */
export interface SubmitResult {
  applied: Ack;
  persisted: Ack;
}

/** Error codes of a refused batch that are the caller's input (400), by the sandbox or at the edge. */
const INPUT_CODES = new Set([
  'invalid_path',
  'too_large',
  'too_many_files',
  'invalid_frame',
  'malformed_frame',
  'invalid_rename',
]);

/** The error a refusal frame stands for, keeping its code. */
export function refusalError(f: { code: string; message: string }): PreviewError {
  if (f.code === 'stale_seq' || f.code === 'duplicate_seq') return new ConflictError(f.code, f.message);
  if (INPUT_CODES.has(f.code)) return new InvalidInputError(f.code, f.message);
  return new TierUnavailableError(f.code, f.message, { tier: 'sandbox' });
}

/**
 * One batch submitted on this replica outside an editor socket (HTTP), waiting for its outcome in
 * the frames the owner sends to its client: its own `applied` ack then a `persisted` ack that covers
 * it, or an `error` with its seq (refused by validation or the sandbox, or a stale seq).
 *
 * @example
 * const w = new BatchWaiter(HTTP_CLIENT, { seq: 7, ops });
 * hub.forward(w.client, w.batch); // frames for the client: w.offer(frame)
 * const { applied, persisted } = await w.done;
 */
export class BatchWaiter {
  readonly done: Promise<SubmitResult>;
  #applied: Ack | undefined;
  #settled = false;
  #resolve!: (r: SubmitResult) => void;
  #reject!: (e: unknown) => void;

  constructor(
    readonly client: string,
    readonly batch: Forwarded,
  ) {
    this.done = new Promise<SubmitResult>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** A frame for this waiter's client; returns whether the waiter settled. */
  offer(f: ServerFrame): boolean {
    if (this.#settled) return true;
    const seq = this.batch.seq;
    if (f.type === 'error' && f.seq === seq) {
      this.fail(refusalError(f));
    } else if (f.type === 'ack' && f.stage === 'applied' && f.seq === seq && !f.duplicate) {
      this.#applied = { type: 'ack', seq, stage: 'applied' };
    } else if (f.type === 'ack' && f.stage === 'persisted' && f.seq >= seq && this.#applied) {
      this.#settled = true;
      this.#resolve({ applied: this.#applied, persisted: { type: 'ack', seq, stage: 'persisted' } });
    }
    return this.#settled;
  }

  fail(e: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#reject(e);
  }
}
