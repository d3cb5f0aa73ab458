/** Quiet time after the last activity before a full collection runs, in ms. */
export const IDLE_GC_MS = 5_000;

/**
 * An idle preview should hold as little memory as it can: once activity stops (dev-server start, a
 * burst of edits), one full collection runs so V8 hands back the heap the compile burst grew. Each
 * `activity()` pushes it back by `idleMs`. Needs `--expose-gc` (the image's command line); without a
 * `gc` it does nothing.
 *
 * @example
 * const idle = new IdleCollector();
 * idle.activity(); // after a write
 */
export class IdleCollector {
  #timer: NodeJS.Timeout | undefined;
  readonly #gc: (() => void) | undefined;
  readonly #idleMs: number;

  /** @default gc globalThis.gc, idleMs IDLE_GC_MS */
  constructor(o: { gc?: (() => void) | undefined; idleMs?: number } = {}) {
    this.#gc = 'gc' in o ? o.gc : (globalThis as { gc?: () => void }).gc;
    this.#idleMs = o.idleMs ?? IDLE_GC_MS;
  }

  /** Something happened: collect once it has been quiet for `idleMs`. */
  activity(): void {
    const gc = this.#gc;
    if (!gc) return;
    if (this.#timer) this.#timer.refresh();
    else
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        gc();
      }, this.#idleMs).unref();
  }
}
