import { performance } from 'node:perf_hooks';

export type HmrKind = 'update' | 'full-reload' | 'restart';

interface Pending {
  seq: number;
  t0: number;
  files: readonly string[];
  touched: boolean;
}

/** Batches older than this without an update are dropped (their files were not in any module graph). */
const PENDING_TTL_MS = 60_000;

/**
 * Links applied batches to the dev server's own HMR messages: `applied(seq, t0, files)` after the
 * write, `touch(file)` when the dev server starts processing a changed file, `sent(kind)` when it
 * pushes an update to its clients. Each batch is reported once, on the first update that carries
 * one of its files (or, for dev servers that do not say which files, the first update at all).
 */
export class HmrTracker {
  private pending: Pending[] = [];

  constructor(private readonly emit: (e: { seq: number; ms: number; kind: HmrKind }) => void) {}

  /**
   * Batch `seq` is being written. Applied seqs only grow, so pending batches at or above `seq` are
   * a run whose write failed and is now done again one batch at a time: they are registered anew.
   */
  applied(seq: number, t0: number, files: readonly string[]): void {
    const now = performance.now();
    if (this.pending.length > 0 && now - this.pending[0]!.t0 > PENDING_TTL_MS)
      this.pending = this.pending.filter((p) => now - p.t0 <= PENDING_TTL_MS);
    while ((this.pending.at(-1)?.seq ?? -1) >= seq) this.pending.pop();
    this.pending.push({ seq, t0, files, touched: false });
  }

  /** The dev server began handling `file` (absolute path). */
  touch(file: string): void {
    for (const p of this.pending) if (!p.touched && p.files.includes(file)) p.touched = true;
  }

  /** An update went out. `anyFile`: attribute it to every pending batch, touched or not. */
  sent(kind: HmrKind, anyFile = false): void {
    if (this.pending.length === 0) return;
    const now = performance.now();
    const keep: Pending[] = [];
    for (const p of this.pending) {
      if (p.touched || anyFile) this.emit({ seq: p.seq, ms: Math.round((now - p.t0) * 1000) / 1000, kind });
      else keep.push(p);
    }
    this.pending = keep;
  }

  get size(): number {
    return this.pending.length;
  }
}
