import pRetry from 'p-retry';
import { PreviewError, UnauthorizedError } from '../errors.ts';
import type { SyncChannel } from '../types.ts';
import type { Ack, FileBatch, StatusEvent } from '../wire.ts';
import { sendAndAwaitAck } from './ack.ts';
import { type DaemonSyncOptions, openDaemonSync } from './channel.ts';

/** How a {@link DaemonLink} reaches its daemon (everything of `openDaemonSync` but the per-call parts). */
export type DaemonLinkOptions = Omit<DaemonSyncOptions, 'signal' | 'lastAckedSeq'> & {
  /** Backoff between reopen attempts while watching, in ms. @default { min: 100, max: 2000 } */
  reopenDelayMs?: { min: number; max: number } | undefined;
};

/**
 * One long-lived connection to a daemon's sync socket, for whoever loads and edits the project on
 * behalf of others (the pool agent's claims and `apply`, the fly tier's `apply`): `send(batch)`
 * resolves with the daemon's `applied` ack for that seq, or rejects with its error frame. The socket
 * opens on first use (or `connect()`) and again on the next use after it dropped.
 *
 * With `watch()`, the link also keeps the socket open (reopening it with backoff through p-retry
 * after it drops) and follows the daemon's `status` frames: the daemon sends one on connect and on
 * every phase change, so `status` is what the daemon knows, without polling.
 *
 * @example
 * const link = new DaemonLink({ url: 'ws://127.0.0.1:32768/__preview/sync', token });
 * link.watch();
 * link.onStatus((s) => log.info({ phase: s.phase }, 'daemon status'));
 * await link.send({ type: 'batch', seq: 0, ops });
 * link.close();
 */
export class DaemonLink {
  readonly #o: DaemonLinkOptions;
  readonly #stop = new AbortController();
  readonly #statusListeners = new Set<(s: StatusEvent) => void>();
  #channel: SyncChannel | undefined;
  #opening: Promise<SyncChannel> | undefined;
  #status: StatusEvent | undefined;
  #inflight = 0;
  #watching = false;

  constructor(options: DaemonLinkOptions) {
    this.#o = options;
  }

  /** The daemon's last `status` frame, once one arrived. */
  get status(): StatusEvent | undefined {
    return this.#status;
  }

  /** Whether the socket is open now. */
  get open(): boolean {
    return this.#channel?.open === true;
  }

  /** Subscribes to the daemon's `status` frames; returns an unsubscribe function. */
  onStatus(listener: (s: StatusEvent) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  /** Opens the socket ahead of the first batch (keeps the handshake off a claim). */
  async connect(options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#open(options.signal);
  }

  /** Keeps the socket open until `close()`, reopening it with backoff whenever it drops. */
  watch(): void {
    if (this.#watching || this.#stop.signal.aborted) return;
    this.#watching = true;
    void this.#reopen();
  }

  /**
   * Sends one batch and resolves with its `applied` ack.
   *
   * @throws InvalidInputError (a bad batch), TimeoutError (`ack_timeout`), PreviewError
   *   (`channel_closed`, the daemon's code), and what `openDaemonSync` throws.
   */
  async send(batch: FileBatch, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Ack> {
    const ch = await this.#open(options.signal);
    this.#inflight++;
    try {
      const ack = await sendAndAwaitAck(ch, batch, {
        timeoutMs: options.timeoutMs ?? 30_000,
        signal: options.signal,
        // An error the daemon could not give a seq concerns the one batch in flight, if only one is.
        ownsUnnumberedError: () => this.#inflight === 1,
      });
      return { type: 'ack', seq: ack.seq, stage: ack.stage };
    } finally {
      this.#inflight--;
    }
  }

  /** Closes the socket and stops watching; repeat-safe. */
  close(): void {
    this.#stop.abort();
    this.#statusListeners.clear();
    this.#channel?.close();
    this.#channel = undefined;
  }

  #open(signal?: AbortSignal): Promise<SyncChannel> {
    if (this.#stop.signal.aborted)
      return Promise.reject(new PreviewError('channel_closed', 'daemon link is closed'));
    if (this.#channel?.open) return Promise.resolve(this.#channel);
    this.#opening ??= openDaemonSync({ ...this.#o, signal: this.#stop.signal })
      .then((ch) => this.#attach(ch))
      .finally(() => {
        this.#opening = undefined;
      });
    if (!signal) return this.#opening;
    // The caller may give up waiting; the opening goes on for the next caller.
    const opening = this.#opening;
    return new Promise<SyncChannel>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      opening.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  #attach(ch: SyncChannel): SyncChannel {
    if (this.#stop.signal.aborted) {
      ch.close();
      throw new PreviewError('channel_closed', 'daemon link is closed');
    }
    this.#channel = ch;
    ch.onFrame((f) => {
      if (f.type !== 'status') return;
      this.#status = f;
      for (const l of this.#statusListeners) l(f);
    });
    ch.onClose(() => {
      if (this.#channel === ch) this.#channel = undefined;
      if (this.#watching) void this.#reopen();
    });
    return ch;
  }

  async #reopen(): Promise<void> {
    const delay = this.#o.reopenDelayMs ?? { min: 100, max: 2000 };
    await pRetry(() => this.#open(), {
      retries: Number.POSITIVE_INFINITY,
      minTimeout: delay.min,
      maxTimeout: delay.max,
      signal: this.#stop.signal,
      unref: true,
      // A refused token will not get better by asking again.
      shouldRetry: ({ error }) => !(error instanceof UnauthorizedError),
    }).catch(() => {});
  }
}
