/**
 * The owner's supply of global seqs for one preview. Seqs come in blocks reserved in the shared
 * state (`SyncState.reserveSeqs`); at most one reservation is in flight and its block (the spare)
 * is used before another is asked for, so seqs only ever increase, across owners too. A new block is
 * prefetched when the current one runs low, off the edit path.
 *
 * @example
 * const seqs = new SeqBlocks({ reserve: (n, floor) => state.reserveSeqs(id, n, floor) });
 * await seqs.start(lastPersistedSeq);
 * if (!seqs.available) await seqs.refill();
 * const seq = seqs.take();
 */
export class SeqBlocks {
  readonly blockSize: number;
  #next = 0;
  #end = -1;
  #spare: number | undefined;
  #prefetch: Promise<void> | undefined;
  readonly #reserve: (n: number, floor: number) => Promise<number>;
  readonly #onPrefetchError: (e: unknown) => void;

  constructor(o: {
    /** Reserves `n` seqs above `floor`; resolves with the first. */
    reserve(n: number, floor: number): Promise<number>;
    /** A background prefetch failed (the next `refill` tries again). */
    onPrefetchError?: (e: unknown) => void;
    /** @default 1000 */
    blockSize?: number;
  }) {
    this.blockSize = o.blockSize ?? 1000;
    if (!Number.isSafeInteger(this.blockSize) || this.blockSize < 1)
      throw new TypeError(`SeqBlocks: blockSize must be a positive integer (got ${o.blockSize})`);
    this.#reserve = o.reserve;
    this.#onPrefetchError = o.onPrefetchError ?? (() => {});
  }

  /** Reserves the first block above `floor` (the last persisted seq). Nothing is numbered before. */
  async start(floor: number): Promise<void> {
    const first = await this.#reserve(this.blockSize, floor);
    this.#next = first;
    this.#end = first + this.blockSize - 1;
  }

  /** A seq can be taken without waiting. */
  get available(): boolean {
    return this.#next <= this.#end || this.#spare !== undefined;
  }

  /** Makes sure a spare block is reserved (joins the reservation in flight, if any). */
  refill(): Promise<void> {
    if (this.#spare !== undefined) return Promise.resolve();
    this.#prefetch ??= this.#reserve(this.blockSize, this.#end).then(
      (first) => {
        this.#prefetch = undefined;
        this.#spare = first;
      },
      (e: unknown) => {
        this.#prefetch = undefined;
        throw e;
      },
    );
    return this.#prefetch;
  }

  /** The next seq. Call only when `available`. */
  take(): number {
    if (this.#next > this.#end) this.#useSpare();
    if (this.#next > this.#end) throw new Error('SeqBlocks.take: no seq available; await refill() first');
    const seq = this.#next++;
    if (this.#end - this.#next < this.blockSize / 5 && this.#spare === undefined && !this.#prefetch)
      this.refill().catch(this.#onPrefetchError);
    return seq;
  }

  #useSpare(): void {
    if (this.#spare === undefined) return;
    this.#next = this.#spare;
    this.#end = this.#spare + this.blockSize - 1;
    this.#spare = undefined;
  }
}
