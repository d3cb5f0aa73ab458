/**
 * Sends edits as the user types without a message per keystroke and without waiting for a pause
 * first: the first edit after a quiet spell goes out at once (the preview updates as soon as it
 * can); edits that follow within `ms` are gathered and sent once typing pauses for `ms` (the last
 * text of each path wins).
 */
export class EditDebouncer {
  readonly #ms: number;
  readonly #send: (path: string, text: string) => void;
  readonly #pending = new Map<string, string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** `performance.now()` of the last edit (sent or gathered). */
  #last = Number.NEGATIVE_INFINITY;

  /**
   * @param ms the pause that ends a burst, ms (e.g. 150)
   * @param send called with a path and its latest text
   * @throws RangeError when `ms` is negative or not finite
   */
  constructor(ms: number, send: (path: string, text: string) => void) {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`ms: must be a finite number ≥ 0 (got ${ms})`);
    this.#ms = ms;
    this.#send = send;
  }

  /** An edit: sent now when the previous one is over `ms` old, else gathered until the pause. */
  edit(path: string, text: string, now = performance.now()): void {
    const quiet = now - this.#last >= this.#ms && this.#pending.size === 0;
    this.#last = now;
    if (quiet) {
      this.#send(path, text);
      this.#arm();
      return;
    }
    this.#pending.set(path, text);
    this.#arm();
  }

  /** Edits gathered and not yet sent. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Sends what is gathered now (e.g. before another file is opened, renamed or deleted). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = [...this.#pending];
    this.#pending.clear();
    for (const [path, text] of batch) this.#send(path, text);
  }

  /** Drops what is gathered (the project is closed). */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pending.clear();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.flush(), this.#ms);
  }
}
