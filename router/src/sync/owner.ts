import { type FileOp, PreviewError, type ServerFrame, type SyncChannel } from '@preview/tiers';
import type { SyncStore } from '../store/project-files.ts';
import { type ClientBatch, ClientOrder, HTTP_CLIENT } from './client-order.ts';
import type { SyncLogger } from './editor-socket.ts';
import { type Clock, InflightBatches, OwnerFence } from './owner-fence.ts';
import { createPersister, type Persister } from './persister.ts';
import { SeqBlocks } from './seq-blocks.ts';
import type { SyncState } from './state.ts';

/** What an owner needs from the hub that created it. */
export interface OwnerContext {
  previewId: string;
  /** This owner's lease token (`<replicaId>#<epoch>`). */
  token: string;
  leaseMs: number;
  /** How long a gap in a client's seqs may last before its editors are told to reconnect. */
  gapMs: number;
  persistDelayMs: number;
  /** Coalescing window for batches the sandbox applied (their editor has its `applied` ack). */
  appliedPersistDelayMs: number;
  clock: Clock;
  state: SyncState;
  store: SyncStore;
  /**
   * Opens the tier's live channel to the preview's sandbox; `null` when the preview has no server
   * sandbox (browser tier): the editor's runtime applies its edits, the owner only persists them.
   */
  openChannel(previewId: string): Promise<SyncChannel | null>;
  log: SyncLogger;
  /** Sends a frame to client `client`'s editors (or all), on every replica. */
  deliver(client: string | undefined, f: ServerFrame): void;
  /** The sandbox reported an update `ms` after a batch was applied (its `hmr` frame). */
  onHmr?(ms: number): void;
  /** Closes client `client`'s editors on every replica (they reconnect and replay). */
  closeClient(client: string, reason: string): void;
  /** The lease is lost or the owner stalled: stop acting as owner. */
  stepDown(): void;
  /** The preview ended (its channel can never open again): stop everything, everywhere. */
  ended(reason: string): void;
}

/**
 * The one replica that talks to a preview's sandbox: numbers editor batches with global seqs, sends
 * them in order, turns the sandbox's acks into per-client acks, and queues applied batches for
 * write-behind persistence. See `README.md` (ordering, failover, exactly-once).
 */
export class SyncOwner {
  readonly persister: Persister;
  readonly fence: OwnerFence;
  readonly inflight = new InflightBatches();
  readonly #seqs: SeqBlocks;
  readonly #clients = new Map<string, ClientOrder>();
  readonly #loading = new Map<string, Promise<void>>();
  readonly #inbox: ClientBatch[] = [];
  readonly #unsubs: Array<() => void> = [];
  readonly #c: OwnerContext;
  #channel: SyncChannel | undefined;
  /** No sandbox (browser tier): batches are persisted as accepted; only `persisted` is acked. */
  #editorApplies = false;
  #opening = false;
  #closed = false;
  #pumping = false;
  #started: Promise<void> | undefined;
  #reopenDelay = 50;
  lastActivity: number;

  constructor(c: OwnerContext) {
    this.#c = c;
    this.lastActivity = c.clock.now();
    this.fence = new OwnerFence({
      leaseMs: c.leaseMs,
      clock: c.clock,
      renew: () => c.state.renew(c.previewId, c.token, c.leaseMs),
      onLost: () => c.stepDown(),
    });
    this.#seqs = new SeqBlocks({
      reserve: (n, floor) => c.state.reserveSeqs(c.previewId, n, floor),
      onPrefetchError: (err) => c.log.warn({ err, previewId: c.previewId }, 'seq prefetch failed'),
    });
    this.persister = createPersister({
      store: c.store,
      previewId: c.previewId,
      delayMs: c.persistDelayMs,
      onPersisted: (byClient) => this.#onPersisted(byClient),
      onError: (err) => c.log.warn({ previewId: c.previewId, err }, 'sync persist failed; retrying'),
      fence: () => this.fence.valid(),
    });
  }

  get token(): string {
    return this.#c.token;
  }

  /** Nothing in flight and nothing waiting to be persisted. */
  get idle(): boolean {
    return this.inflight.size === 0 && this.persister.pending === 0;
  }

  /** Settles when the first seq block is reserved; nothing is numbered before that. */
  start(): Promise<void> {
    this.#started ??= (async () => {
      await this.#seqs.start(await this.#c.store.lastSeq(this.#c.previewId));
      void this.#openChannel();
    })();
    return this.#started;
  }

  /** An editor batch for this owner (from this replica's editors or over the bus). */
  accept(b: ClientBatch): void {
    this.lastActivity = this.#c.clock.now();
    // The fast path only when nothing is queued ahead: order per client is the invariant.
    if (
      !this.#pumping &&
      this.#inbox.length === 0 &&
      this.#clients.has(b.client) &&
      this.#seqs.available &&
      this.fence.valid()
    ) {
      try {
        this.#process(b);
      } catch (err) {
        this.#stall(err);
      }
      return;
    }
    this.#inbox.push(b);
    void this.#pump();
  }

  /** Clients stuck behind a gap for too long: their editors reconnect and replay what is unpersisted. */
  checkGaps(): void {
    const now = this.#c.clock.now();
    for (const [client, order] of this.#clients)
      if (order.stuck(now, this.#c.gapMs))
        this.#c.closeClient(client, 'gap in batch order: reconnect and replay');
  }

  /** Stops; `flush` lets the write-behind queue finish first (a clean release, not a lost lease). */
  close(flush: boolean): void {
    this.#closed = true;
    for (const u of this.#unsubs.splice(0)) u();
    const ch = this.#channel;
    this.#channel = undefined;
    if (flush) void this.persister.drained().then(() => this.persister.close());
    else this.persister.close();
    ch?.close();
  }

  #stall(err: unknown): void {
    this.#c.log.error({ previewId: this.#c.previewId, err }, 'sync owner stalled; stepping down');
    this.#c.stepDown();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      // Seqs from a block reserved before the first one would go backwards: wait for start().
      await this.start();
      while (this.#inbox.length && !this.#closed) {
        const b = this.#inbox[0] as ClientBatch;
        if (!this.#clients.has(b.client)) await this.#load(b.client);
        if (!this.#seqs.available) await this.#seqs.refill();
        if (!this.fence.valid() && !(await this.fence.renewNow())) return;
        this.#inbox.shift();
        this.#process(b);
      }
    } catch (err) {
      this.#stall(err);
    } finally {
      this.#pumping = false;
    }
  }

  /**
   * Redis holds the fast watermarks; Postgres the persisted mark committed with the edits, which is
   * exact even when the previous owner died between its COMMIT and its Redis write.
   */
  #load(client: string): Promise<void> {
    let p = this.#loading.get(client);
    if (!p) {
      const { previewId } = this.#c;
      p = Promise.all([
        this.#c.state.getWatermarks(previewId, client),
        this.#c.store.persistedMark(previewId, client),
      ])
        .then(([w, mark]) => {
          this.#clients.set(
            client,
            new ClientOrder({
              applied: w.applied,
              persisted: Math.max(w.persisted, mark),
              increasing: client === HTTP_CLIENT,
            }),
          );
        })
        .finally(() => this.#loading.delete(client));
      this.#loading.set(client, p);
    }
    return p;
  }

  #process(b: ClientBatch): void {
    const order = this.#clients.get(b.client) as ClientOrder;
    order.admit(b, this.#c.clock.now(), (x) => this.#processInOrder(order, x));
  }

  #processInOrder(order: ClientOrder, b: ClientBatch): void {
    const { deliver } = this.#c;
    if (order.increasing && b.seq <= order.sent) {
      deliver(b.client, staleSeq(b.seq, order.sent));
      return;
    }
    // Below: an editor's replay of a batch processed before is acked as the duplicate it is.
    if (b.seq <= order.persisted) {
      deliver(b.client, { type: 'ack', seq: b.seq, stage: 'applied', duplicate: true });
      deliver(b.client, { type: 'ack', seq: order.persisted, stage: 'persisted' });
      return;
    }
    if (b.seq <= order.sent) {
      // Already in the sandbox (sent by us, or applied under a previous owner).
      if (b.seq <= order.applied && order.enqueue(b.seq))
        this.#persist(b.client, b.seq, this.#seqs.take(), b.ops ?? []);
      if (b.seq <= order.applied)
        deliver(b.client, { type: 'ack', seq: b.seq, stage: 'applied', duplicate: true });
      return;
    }
    order.sent = b.seq;
    if (b.ops === null) {
      // Refused at the edge (the editor got the error): it keeps its place so acks stay exact.
      order.raiseApplied(b.seq);
      order.enqueue(b.seq);
      this.#persist(b.client, b.seq, this.#seqs.take(), []);
      return;
    }
    const seq = this.#seqs.take();
    if (this.#editorApplies) {
      this.#persistAccepted(order, { seq, client: b.client, clientSeq: b.seq, ops: b.ops });
      return;
    }
    this.inflight.add({ seq, client: b.client, clientSeq: b.seq, ops: b.ops });
    // The edit goes to the sandbox first; persistence follows its `applied` ack. `origin` lets the
    // sandbox recognise this editor batch if a later owner sends it again. A channel that is closing
    // (its socket between the close frame and the close event) takes nothing: the batch waits in
    // `inflight` and goes on the channel opened in its place.
    const ch = this.#channel;
    if (ch?.open) ch.send({ type: 'batch', seq, ops: b.ops, origin: { client: b.client, seq: b.seq } });
    else if (ch) this.#channelLost(ch, { closed: 'before a batch' });
  }

  /**
   * `ch` closed (its close event), or was found closing or closed: the owner drops it and opens a
   * new one, which sends `inflight` again. Once per channel: the close event of a channel already
   * dropped (found closing before it fired) does nothing.
   */
  #channelLost(ch: SyncChannel, why: Record<string, unknown>): void {
    if (this.#channel !== ch) return;
    this.#channel = undefined;
    this.#c.log.warn({ previewId: this.#c.previewId, ...why }, 'sandbox channel closed; reopening');
    this.#retryOpen();
  }

  /**
   * No sandbox: what validation accepted is queued for persistence at once. The owner's `applied`
   * mark moves (for de-duplication) but no `applied` ack goes out: the editor's runtime reports it.
   */
  #persistAccepted(
    order: ClientOrder | undefined,
    b: { seq: number; client: string; clientSeq: number; ops: readonly FileOp[] },
  ): void {
    order?.raiseApplied(b.clientSeq);
    if (order?.enqueue(b.clientSeq)) this.#persist(b.client, b.clientSeq, b.seq, b.ops);
  }

  #persist(
    client: string,
    clientSeq: number,
    seq: number,
    ops: readonly FileOp[],
    delayMs = this.#c.persistDelayMs,
  ): void {
    this.persister.enqueue({ seq, ops, clientId: client, clientSeq }, delayMs);
  }

  async #openChannel(): Promise<void> {
    if (this.#opening || this.#closed) return;
    this.#opening = true;
    const { previewId, log } = this.#c;
    try {
      const ch = await this.#c.openChannel(previewId);
      if (this.#closed) {
        ch?.close();
        return;
      }
      if (ch === null) {
        this.#editorApplies = true;
        // Batches numbered while the channel was being looked up: persisted in their order.
        for (const inf of this.inflight.ackUpTo(Number.POSITIVE_INFINITY))
          this.#persistAccepted(this.#clients.get(inf.client), inf);
        return;
      }
      this.#channel = ch;
      this.#reopenDelay = 50;
      this.#unsubs.push(
        ch.onFrame((f) => this.#onSandboxFrame(f)),
        ch.onClose((code, reason) => this.#channelLost(ch, { code, reason })),
      );
      // Whatever was sent on a previous channel and not acked goes again, in order (at-least-once).
      if (!this.fence.valid() && !(await this.fence.renewNow())) return;
      for (const f of this.inflight.values()) {
        if (!ch.open) return this.#channelLost(ch, { closed: 'before the replay' });
        ch.send({ type: 'batch', seq: f.seq, ops: f.ops, origin: { client: f.client, seq: f.clientSeq } });
      }
    } catch (err) {
      if (err instanceof PreviewError && err.code === 'preview_ended') {
        // The sandbox is gone for good (deleted, failed): no retry against it.
        log.info({ previewId, reason: err.message }, 'preview ended; sync owner stops');
        this.#c.ended(err.message);
        return;
      }
      log.warn({ previewId, err }, 'opening sandbox channel failed; retrying');
      this.#retryOpen();
    } finally {
      this.#opening = false;
    }
  }

  #retryOpen(): void {
    if (this.#closed) return;
    const d = this.#reopenDelay;
    this.#reopenDelay = Math.min(2000, d * 2);
    setTimeout(() => void this.#openChannel(), d * (0.5 + Math.random() / 2)).unref?.();
  }

  #onSandboxFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'ack':
        if (f.stage === 'applied') this.#onApplied(f.seq);
        return;
      case 'hmr': {
        if (typeof f.ms === 'number') this.#c.onHmr?.(f.ms);
        const o = this.inflight.originOf(f.seq);
        if (o) this.#c.deliver(o.client, { ...f, seq: o.clientSeq });
        return;
      }
      case 'error': {
        const inf = f.seq === undefined ? undefined : this.inflight.refuse(f.seq);
        if (!inf) {
          this.#c.deliver(undefined, f);
          return;
        }
        // Rejected by the sandbox: nothing of it was written, so nothing is persisted; the client's
        // persisted watermark must still pass this seq in order.
        const order = this.#clients.get(inf.client);
        order?.raiseApplied(inf.clientSeq);
        if (order?.enqueue(inf.clientSeq)) this.#persist(inf.client, inf.clientSeq, inf.seq, []);
        this.#c.deliver(inf.client, { ...f, seq: inf.clientSeq });
        return;
      }
      case 'status':
        this.#c.deliver(undefined, f);
        return;
      default:
        return;
    }
  }

  /** The sandbox wrote everything up to global `seq`. */
  #onApplied(seq: number): void {
    const { previewId, state, log } = this.#c;
    for (const inf of this.inflight.ackUpTo(seq)) {
      const order = this.#clients.get(inf.client);
      if (!order) continue;
      order.raiseApplied(inf.clientSeq);
      // An HTTP caller waits for `persisted`; an editor has its answer in `applied`, and its batch
      // is persisted after the page's HMR module fetch (which this process serves) has gone by.
      if (order.enqueue(inf.clientSeq))
        this.#persist(
          inf.client,
          inf.clientSeq,
          inf.seq,
          inf.ops,
          inf.client === HTTP_CLIENT ? this.#c.persistDelayMs : this.#c.appliedPersistDelayMs,
        );
      this.#c.deliver(inf.client, { type: 'ack', seq: inf.clientSeq, stage: 'applied' });
      state
        .setWatermark(previewId, inf.client, 'applied', inf.clientSeq)
        .catch((err: unknown) => log.warn({ err, previewId }, 'applied watermark write failed'));
    }
  }

  #onPersisted(byClient: Map<string, number>): void {
    const { previewId, state, log } = this.#c;
    for (const [client, seq] of byClient) {
      this.#clients.get(client)?.raisePersisted(seq);
      // The watermark is written before the ack goes out, so a replay after the ack is de-duplicated.
      state
        .setWatermark(previewId, client, 'persisted', seq)
        .catch((err: unknown) => log.warn({ err, previewId }, 'persisted watermark write failed'))
        .finally(() => this.#c.deliver(client, { type: 'ack', seq, stage: 'persisted' }));
    }
  }
}

/** A seq of the HTTP client that is not above the last one the preview took from it. */
function staleSeq(seq: number, last: number): ServerFrame {
  return seq === last
    ? {
        type: 'error',
        code: 'duplicate_seq',
        seq,
        message: `seq ${seq} was already taken by this preview (applied or refused then); nothing was written now`,
      }
    : {
        type: 'error',
        code: 'stale_seq',
        seq,
        message: `seq ${seq} is below ${last}, the last seq this preview took from this client; nothing was written`,
      };
}
