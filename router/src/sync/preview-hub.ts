import { CloseCodes, ConflictError, type ServerFrame, TimeoutError } from '@preview/tiers';
import { BatchWaiter, type SubmitResult } from './batch-waiter.ts';
import type { BusMessage, SyncBus } from './bus.ts';
import { HTTP_CLIENT } from './client-order.ts';
import type { EditorConnection, Forwarded, SyncLogger } from './editor-socket.ts';
import type { SyncOwner } from './owner.ts';
import type { Clock } from './owner-fence.ts';
import type { SyncState } from './state.ts';

/** What a preview's hub needs from the replica-wide hub. */
export interface PreviewHubContext {
  previewId: string;
  replicaId: string;
  leaseMs: number;
  /** An owner with no editors and no traffic for this long releases its lease. */
  ownerIdleMs: number;
  clock: Clock;
  state: SyncState;
  bus: SyncBus;
  log: SyncLogger;
  /** A fresh lease token (`<replicaId>#<epoch>`). */
  newToken(): string;
  /** Builds this replica's owner for the preview (not started). */
  newOwner(hub: PreviewHub, token: string): SyncOwner;
  /** The router is shutting down: take no lease. */
  closing(): boolean;
  /** Forget this preview (no editors, not owner). */
  dispose(previewId: string): void;
}

/**
 * One preview on this replica: its editor sockets, who owns its sandbox channel (this replica's
 * `SyncOwner`, or another replica's token), the lease tick, and the preview's side of the bus.
 */
export class PreviewHub {
  readonly editors = new Set<EditorConnection>();
  /** Batches submitted here over HTTP, waiting for their outcome. */
  readonly #waiters = new Set<BatchWaiter>();
  owner: SyncOwner | undefined;
  /** The owner's lease token, when known (ours or another replica's). */
  ownerToken: string | undefined;
  readonly ready: Promise<void>;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #c: PreviewHubContext;
  #unsubscribe: (() => Promise<void>) | undefined;
  #ticking = false;

  constructor(c: PreviewHubContext) {
    this.#c = c;
    this.ready = c.bus
      .subscribe((m) => this.#onBus(m))
      .then((u) => {
        this.#unsubscribe = u;
        return this.tick();
      });
    this.#timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(c.leaseMs / 3)));
    this.#timer.unref?.();
  }

  get previewId(): string {
    return this.#c.previewId;
  }

  /** Someone here waits on the preview: an editor socket or a submitted batch. */
  get busy(): boolean {
    return this.editors.size > 0 || this.#waiters.size > 0;
  }

  /**
   * Submits an HTTP batch (client `HTTP_CLIENT`) through the same owner, order and persistence as
   * editor batches; settles with its outcome. `signal` bounds the wait.
   */
  submit(
    batch: { seq: number; ops: NonNullable<Forwarded['ops']> },
    signal: AbortSignal,
  ): Promise<SubmitResult> {
    const w = new BatchWaiter(HTTP_CLIENT, batch);
    this.#waiters.add(w);
    const onAbort = () =>
      w.fail(
        new TimeoutError('timeout', `batch seq ${batch.seq} of preview ${this.previewId}: no answer in time`),
      );
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    this.forward(w.client, w.batch);
    return w.done.finally(() => {
      signal.removeEventListener('abort', onAbort);
      this.#waiters.delete(w);
    });
  }

  /** Renews our lease, or tries to take a free one, or learns who holds it. */
  async tick(): Promise<void> {
    if (this.#ticking || this.#c.closing()) return;
    this.#ticking = true;
    const { state, previewId, leaseMs, clock, log } = this.#c;
    try {
      const t0 = clock.now();
      if (this.owner) {
        await this.#renew(this.owner, t0);
        return;
      }
      if (!this.busy) {
        this.dispose();
        return;
      }
      const token = this.#c.newToken();
      if (await state.acquire(previewId, token, leaseMs)) await this.#becomeOwner(t0, token);
      // Someone else holds the lease; we may have missed their announcement (we subscribed later).
      else this.#setOwner(await state.holder(previewId));
    } catch (err) {
      log.warn({ previewId, err }, 'sync lease tick failed');
    } finally {
      this.#ticking = false;
    }
  }

  async #renew(owner: SyncOwner, t0: number): Promise<void> {
    const { state, previewId, leaseMs, clock, log, replicaId } = this.#c;
    if (!(await state.renew(previewId, owner.token, leaseMs))) {
      log.warn({ previewId, replicaId }, 'sync lease lost');
      this.stepDown();
      return;
    }
    owner.fence.held(t0);
    owner.checkGaps();
    if (!this.busy && clock.now() - owner.lastActivity > this.#c.ownerIdleMs && owner.idle)
      await this.release();
  }

  async #becomeOwner(t0: number, token: string): Promise<void> {
    const { state, previewId, log, replicaId } = this.#c;
    const owner = this.#c.newOwner(this, token);
    owner.fence.held(t0);
    this.owner = owner;
    // What waited for an owner goes to it now, once: a batch that arrives during start() is
    // accepted directly (forward() sees the owner), so #setOwner below must not send it again (an
    // HTTP batch sent twice answered 409 duplicate_seq while its first copy was being applied).
    this.ownerToken = token;
    for (const e of this.editors)
      for (const f of e.pending) owner.accept({ client: e.clientId, seq: f.seq, ops: f.ops });
    for (const w of this.#waiters) owner.accept({ client: w.client, seq: w.batch.seq, ops: w.batch.ops });
    try {
      await owner.start();
    } catch (e) {
      this.owner = undefined;
      this.ownerToken = undefined;
      owner.close(false);
      await state.release(previewId, token).catch(() => {});
      throw e;
    }
    log.info({ previewId, replicaId }, 'sync owner');
    this.#c.bus.publish({ kind: 'owner', owner: token });
  }

  /**
   * Stops owning without flushing: a replica that lost the lease must not write unflushed edits (the
   * new owner could already be writing newer ones); editors re-forward everything not yet persisted.
   */
  stepDown(): void {
    const o = this.owner;
    if (!o) return;
    this.owner = undefined;
    this.ownerToken = undefined;
    o.close(false);
  }

  /** Gives the lease up cleanly: the write-behind queue is drained first. */
  async release(): Promise<void> {
    const o = this.owner;
    if (!o) return;
    this.owner = undefined;
    this.ownerToken = undefined;
    o.close(true);
    await o.persister.drained();
    await this.#c.state.release(this.#c.previewId, o.token);
    this.dispose();
  }

  #setOwner(token: string | undefined): void {
    if (token === this.ownerToken) return;
    this.ownerToken = token;
    if (!token) return;
    for (const e of this.editors) for (const f of e.pending) this.forward(e.clientId, f);
    for (const w of this.#waiters) this.forward(w.client, w.batch);
  }

  /** Sends an editor batch to the owner; with no known owner it stays pending until one is known. */
  forward(client: string, f: Forwarded): void {
    if (this.owner) this.owner.accept({ client, seq: f.seq, ops: f.ops });
    else if (this.ownerToken)
      this.#c.bus.publish({ kind: 'batch', owner: this.ownerToken, client, seq: f.seq, ops: f.ops });
  }

  #onBus(m: BusMessage): void {
    switch (m.kind) {
      case 'batch':
        if (this.owner && m.owner === this.owner.token)
          this.owner.accept({ client: m.client, seq: m.seq, ops: m.ops });
        return;
      case 'frame':
        if (m.replica !== this.#c.replicaId) this.deliverLocal(m.client, m.frame);
        return;
      case 'owner':
        if (m.owner !== this.owner?.token) {
          if (this.owner) this.stepDown();
          this.#setOwner(m.owner);
        }
        return;
      case 'close':
        for (const e of this.editors) if (e.clientId === m.client) e.close(m.code, m.reason);
        return;
      case 'end':
        this.#endHere(m.reason);
        return;
      case 'moved':
        void this.#movedHere(m.reason).catch((err: unknown) =>
          this.#c.log.warn({ err, previewId: this.previewId }, 'sync hand-over failed'),
        );
        return;
    }
  }

  /** Closes client `client`'s editors here and on other replicas (they reconnect and replay). */
  closeClient(client: string, reason: string): void {
    for (const e of this.editors) if (e.clientId === client) e.close(CloseCodes.goingAway, reason);
    this.#c.bus.publish({ kind: 'close', client, code: CloseCodes.goingAway, reason });
  }

  /**
   * The preview ended (deleted, failed): its sandbox is gone. Editors here and on other replicas are
   * closed with `ended`, waiting batches fail, the owner persists what the sandbox applied and lets
   * go. Nothing retries against the sandbox.
   */
  end(reason: string): void {
    this.#c.bus.publish({ kind: 'end', reason });
    this.#endHere(reason);
  }

  /**
   * The preview moved to another tier (same id): the owner persists what it holds and lets go, and
   * editors here and on other replicas are closed with `goingAway`, so they reconnect and replay
   * what is not yet persisted toward the next owner, which opens the new tier's channel. Resolves
   * when this replica's owner has flushed.
   */
  async moved(reason: string): Promise<void> {
    this.#c.bus.publish({ kind: 'moved', reason });
    await this.#movedHere(reason);
  }

  async #movedHere(reason: string): Promise<void> {
    for (const e of this.editors) e.close(CloseCodes.goingAway, reason);
    await this.release();
  }

  #endHere(reason: string): void {
    for (const e of this.editors) e.close(CloseCodes.ended, reason);
    for (const w of this.#waiters) w.fail(new ConflictError('preview_ended', reason));
    void this.release().catch((err: unknown) =>
      this.#c.log.warn({ err, previewId: this.previewId }, 'sync release after end failed'),
    );
  }

  /** Sends a frame to client `client`'s editors (or all), here and on other replicas. */
  deliver(client: string | undefined, f: ServerFrame): void {
    const here = this.deliverLocal(client, f);
    // HTTP batches of one preview may wait on several replicas at once: their frames go to all.
    if (client === undefined || !here || client === HTTP_CLIENT)
      this.#c.bus.publish({
        kind: 'frame',
        replica: this.#c.replicaId,
        ...(client === undefined ? {} : { client }),
        frame: f,
      });
  }

  /** Sends to this replica's editors only; true when one of them is client `client`'s. */
  deliverLocal(client: string | undefined, f: ServerFrame): boolean {
    let found = false;
    for (const e of this.editors) {
      if (client !== undefined && e.clientId !== client) continue;
      found = true;
      e.send(f);
    }
    if (client !== undefined)
      for (const w of this.#waiters)
        if (w.client === client) {
          found = true;
          w.offer(f);
        }
    return found;
  }

  /** Forgets the preview on this replica when nothing holds it here. */
  dispose(): void {
    if (this.busy || this.owner) return;
    clearInterval(this.#timer);
    this.#c.dispose(this.previewId);
    void this.ready.then(() => this.#unsubscribe?.()).catch(() => {});
  }

  /** Router shutdown: stop the tick, release the lease, leave the bus. */
  async shutdown(): Promise<void> {
    for (const e of this.editors) e.close(CloseCodes.goingAway, 'router shutting down');
    for (const w of this.#waiters)
      w.fail(new TimeoutError('timeout', 'router shutting down before the batch was persisted'));
    clearInterval(this.#timer);
    await this.release().catch(() => {});
    await this.#unsubscribe?.().catch(() => {});
  }
}
