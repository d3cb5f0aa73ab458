import { closeSync, constants, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { type BatchOrigin, OriginLedger, type OriginOutcome } from '@preview/tiers';
import type { Logger } from './log.ts';

/** The log is rewritten as a snapshot once it grows past this. */
const COMPACT_BYTES = 256 * 1024;
// O_NOFOLLOW: never append through a link planted at the log's name.
const APPEND_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW;

/**
 * The daemon's `OriginLedger`, kept in `<dir>/origins.jsonl` so that a daemon restarted on the same
 * project (a Fly Machine's restart policy, a process-runtime restart) still knows which editor
 * batches it applied. One appended line per batch (one `write`), compacted into a snapshot when it
 * grows. A failed write is logged and the in-memory ledger goes on: a later replay of that batch
 * would then be applied again after a restart, as before the ledger existed.
 */
export class OriginLog {
  readonly #ledger = new OriginLedger();
  readonly #path: string;
  readonly #log: Logger;
  #fd: number | undefined;
  /** The log file was (tried to be) opened: a failure is not retried on every batch. */
  #opened = false;
  #bytes = 0;

  constructor(dir: string, log: Logger) {
    this.#path = `${dir}/origins.jsonl`;
    this.#log = log;
    mkdirSync(dir, { recursive: true });
    let text = '';
    try {
      text = readFileSync(this.#path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err: e }, 'origin log unreadable');
    }
    const bad = this.#ledger.restore(text);
    if (bad) log.warn({ bad }, 'origin log: skipped lines that do not parse');
    // Rewritten now only when there is something to keep; otherwise created by the first record.
    if (text) this.#compact();
  }

  seen(origin: BatchOrigin): OriginOutcome | undefined {
    return this.#ledger.seen(origin);
  }

  record(origin: BatchOrigin, refused?: { code: string; message: string }): void {
    const line = this.#ledger.record(origin, refused);
    if (this.#fd === undefined) {
      // The first record creates the log (with this line in the snapshot); a failed one is not retried.
      if (!this.#opened) this.#compact();
      return;
    }
    try {
      this.#bytes += writeSync(this.#fd, line);
    } catch (e) {
      this.#log.warn({ err: e }, 'origin log write failed');
      return;
    }
    if (this.#bytes > COMPACT_BYTES) this.#compact();
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** Replaces the log with a snapshot (temp file + rename) and reopens it for appending. */
  #compact(): void {
    this.#opened = true;
    this.close();
    const tmp = `${this.#path}.${process.pid}.tmp`;
    try {
      const snap = this.#ledger.snapshot();
      const fd = openSync(
        tmp,
        constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        writeSync(fd, snap);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.#path);
      this.#fd = openSync(this.#path, APPEND_FLAGS, 0o600);
      this.#bytes = Buffer.byteLength(snap);
    } catch (e) {
      this.#log.warn({ err: e }, 'origin log not writable; keeping the ledger in memory only');
    }
  }
}
