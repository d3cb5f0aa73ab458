import { randomUUID } from 'node:crypto';
import {
  ClientFrame,
  CloseCodes,
  type ErrorFrame,
  type FileOp,
  LIMITS,
  parseFrame,
  type ServerFrame,
  type SyncChannel,
} from '@preview/tiers';
import type pg from 'pg';
import type { WebSocket } from 'ws';
import { createPersister, type Persister } from './persister.ts';
import type { PubSub } from './pubsub.ts';
import type { SyncState } from './state.ts';

/** What the hub needs of a logger (pino satisfies it). */
export interface SyncLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/**
 * A message-oriented socket toward one editor. `ws` sockets are adapted by `handleConnection`; other
 * transports (the Supabase Realtime bridge) implement it directly.
 */
export interface SyncSocket {
  send(text: string): void;
  close(code: number, reason: string): void;
  /** Bytes queued but not yet written to the network. */
  readonly bufferedAmount: number;
  onMessage(listener: (text: string | undefined, bytes: number) => void): void;
  onClose(listener: () => void): void;
}

export interface SyncHubDeps {
  pool: pg.Pool;
  pubsub: PubSub;
  state: SyncState;
  /** Opens the tier's live channel to the preview's sandbox (`tier.openSync(previewId)`). */
  openChannel(previewId: string): Promise<SyncChannel>;
  log: SyncLogger;
  /** Identifies this router replica in leases and bus messages (random by default). */
  replicaId?: string;
  /** Owner lease TTL; renewed every third of it. Default 5000. */
  leaseMs?: number;
  /** An editor socket with more than this many bytes unsent is closed with `slowConsumer`. Default 8 MiB. */
  maxBufferedBytes?: number;
  /** Batches an editor may have forwarded but not yet persisted before it is closed with `overloaded`. */
  maxPendingBatches?: number;
  /** Coalescing window of the write-behind queue. Default 5 ms. */
  persistDelayMs?: number;
  /** An owner with no traffic for this long releases its lease and channel. Default 60 s. */
  ownerIdleMs?: number;
}

export interface ConnectionContext {
  previewId: string;
  userId: string;
}

/** Messages on the bus channel `sync:<previewId>`. */
type BusMessage =
  /** A batch from editor client `c` (its seq `s`), addressed to owner `o` (lease token); `ops: null` = refused at the edge. */
  | { k: 'b'; o: string; c: string; s: number; ops: FileOp[] | null }
  /** A frame for the editors: of client `c`, or all of them. */
  | { k: 'f'; r: string; c?: string; f: ServerFrame }
  /** Owner token `r` (replica + epoch) now owns the preview's channel. */
  | { k: 'o'; r: string }
  /** Close client `c`'s sockets with `code`. */
  | { k: 'x'; c: string; code: number; reason: string };

interface Forwarded {
  s: number;
  /** null: refused at the edge (the seq still takes its place in the client's order). */
  ops: FileOp[] | null;
}
type Msg = { c: string; s: number; ops: FileOp[] | null };

interface Editor {
  id: string;
  socket: SyncSocket;
  userId: string;
  clientId: string;
  /** Highest client seq received on this socket. */
  lastSeq: number;
  ready: boolean;
  early: Array<{ text: string | undefined; bytes: number }>;
  /** Forwarded to the owner, not yet persisted, in order: re-forwarded when the owner changes. */
  pending: Forwarded[];
  closed: boolean;
}

interface ClientMarks {
  /** Highest client seq sent to the sandbox (by us or, as far as we know, a previous owner). */
  sent: number;
  /** Highest client seq the sandbox acked `applied`. */
  applied: number;
  /** Highest client seq queued for persistence. */
  enqueued: number;
  persisted: number;
  /** Batches that arrived ahead of a gap (a lost forward), by seq. */
  held: Map<number, Msg>;
  gapSince: number;
}

interface Inflight {
  seq: number;
  c: string;
  s: number;
  ops: FileOp[];
}

const SEQ_BLOCK = 1000;
/** Fraction of the lease TTL during which an owner acts on it (the rest is the clock-skew/latency margin). */
const LEASE_SAFETY = 0.7;

/**
 * The router's sync hub: one WebSocket per editor per preview, ordered delivery to the preview's
 * sandbox through exactly one owner replica, acks back to the editor, write-behind persistence.
 * See `README.md` in this folder for the protocol and its guarantees.
 *
 * @example
 * const hub = createSyncHub({ pool, pubsub, state, openChannel: (id) => tiers.docker.openSync(id), log });
 * wss.on('connection', (ws, req) => hub.handleConnection(ws, { previewId, userId }));
 */
export function createSyncHub(deps: SyncHubDeps) {
  const replicaId = deps.replicaId ?? randomUUID();
  const leaseMs = deps.leaseMs ?? 5000;
  const maxBuffered = deps.maxBufferedBytes ?? 8 * 1024 * 1024;
  const maxPending = deps.maxPendingBatches ?? 4096;
  const ownerIdleMs = deps.ownerIdleMs ?? 60_000;
  const { log, state, pubsub } = deps;
  const previews = new Map<string, PreviewHub>();
  let epochs = 0;
  const newToken = () => `${replicaId}#${++epochs}`;
  /** How long a gap in a client's seqs may last before its editors are told to reconnect and replay. */
  const gapMs = Math.max(1000, leaseMs);
  let closing = false;

  const channelName = (previewId: string) => `sync:${previewId}`;

  class Owner {
    channel: SyncChannel | undefined;
    opening = false;
    closed = false;
    nextSeq = 0;
    endSeq = -1;
    prefetch: Promise<void> | undefined;
    clients = new Map<string, ClientMarks>();
    loading = new Map<string, Promise<void>>();
    inbox: Msg[] = [];
    pumping = false;
    inflight = new Map<number, Inflight>();
    recent = new Map<number, { c: string; s: number }>();
    persister: Persister;
    lastActivity = Date.now();
    /**
     * Local-clock fence: we act as owner (send to the sandbox, COMMIT) only before this instant, which
     * is a safe margin before the lease can expire in Redis (measured from when the acquire/renew
     * request was sent). A replica that stalls past it stops writing before another can take over.
     */
    heldUntil = 0;
    renewing: Promise<boolean> | undefined;
    unsubs: Array<() => void> = [];
    reopenDelay = 50;

    constructor(
      readonly hub: PreviewHub,
      readonly token: string,
    ) {
      this.persister = createPersister({
        pool: deps.pool,
        previewId: hub.previewId,
        delayMs: deps.persistDelayMs ?? 5,
        onPersisted: (byClient) => this.onPersisted(byClient),
        onError: (e) => log.warn({ previewId: hub.previewId, err: e }, 'sync persist failed; retrying'),
        fence: () => this.valid(),
      });
    }

    valid(): boolean {
      return Date.now() < this.heldUntil;
    }

    held(t0: number) {
      this.heldUntil = t0 + leaseMs * LEASE_SAFETY;
    }

    /** Renews the lease now (when the local fence ran out before the timer did). */
    renewNow(): Promise<boolean> {
      if (!this.renewing) {
        const t0 = Date.now();
        this.renewing = state
          .renew(this.hub.previewId, this.token, leaseMs)
          .then((ok) => {
            if (ok) this.held(t0);
            else this.hub.stepDown();
            return ok;
          })
          .finally(() => {
            this.renewing = undefined;
          });
      }
      return this.renewing;
    }

    /** Settles when the first seq block is reserved; nothing is numbered before that. */
    started: Promise<void> | undefined;

    start(): Promise<void> {
      this.started ??= this.#start();
      return this.started;
    }

    async #start(): Promise<void> {
      const r = await deps.pool.query<{ last_seq: string }>(
        'SELECT last_seq FROM preview_sessions WHERE id = $1',
        [this.hub.previewId],
      );
      const floor = Number(r.rows[0]?.last_seq ?? 0);
      const first = await state.reserveSeqs(this.hub.previewId, SEQ_BLOCK, floor);
      this.nextSeq = first;
      this.endSeq = first + SEQ_BLOCK - 1;
      void this.openChannel();
    }

    async openChannel(): Promise<void> {
      if (this.opening || this.closed) return;
      this.opening = true;
      try {
        const ch = await deps.openChannel(this.hub.previewId);
        if (this.closed) {
          ch.close();
          return;
        }
        this.channel = ch;
        this.reopenDelay = 50;
        this.unsubs.push(
          ch.onFrame((f) => this.onSandboxFrame(f)),
          ch.onClose((code, reason) => {
            if (this.channel !== ch) return;
            this.channel = undefined;
            log.warn({ previewId: this.hub.previewId, code, reason }, 'sandbox channel closed; reopening');
            this.retryOpen();
          }),
        );
        // Whatever was sent on a previous channel and not acked goes again, in order (at-least-once).
        if (!this.valid() && !(await this.renewNow())) return;
        for (const f of this.inflight.values())
          ch.send({ type: 'batch', seq: f.seq, ops: f.ops, origin: { client: f.c, seq: f.s } });
      } catch (e) {
        log.warn({ previewId: this.hub.previewId, err: e }, 'opening sandbox channel failed; retrying');
        this.retryOpen();
      } finally {
        this.opening = false;
      }
    }

    retryOpen() {
      if (this.closed) return;
      const d = this.reopenDelay;
      this.reopenDelay = Math.min(2000, d * 2);
      setTimeout(() => void this.openChannel(), d * (0.5 + Math.random() / 2)).unref?.();
    }

    accept(m: Msg) {
      this.lastActivity = Date.now();
      // The fast path only when nothing is queued ahead: order per client is the invariant.
      if (!this.pumping && this.inbox.length === 0 && this.clients.has(m.c) && this.hasSeq() && this.valid())
        this.process(m);
      else {
        this.inbox.push(m);
        void this.pump();
      }
    }

    async pump() {
      if (this.pumping) return;
      this.pumping = true;
      try {
        // Seqs from a block reserved before the first one would go backwards: wait for start().
        await this.start();
        while (this.inbox.length && !this.closed) {
          const m = this.inbox[0] as Msg;
          if (!this.clients.has(m.c)) await this.load(m.c);
          if (!this.hasSeq()) await this.refill();
          if (!this.valid() && !(await this.renewNow())) return;
          this.inbox.shift();
          this.process(m);
        }
      } catch (e) {
        log.error({ previewId: this.hub.previewId, err: e }, 'sync owner stalled; stepping down');
        this.hub.stepDown();
      } finally {
        this.pumping = false;
      }
    }

    load(c: string): Promise<void> {
      let p = this.loading.get(c);
      if (!p) {
        // Redis holds the fast watermarks; Postgres the persisted mark committed with the edits, which
        // is exact even when the previous owner died between its COMMIT and its Redis write.
        p = Promise.all([
          state.getWatermarks(this.hub.previewId, c),
          deps.pool.query<{ persisted_seq: string }>(
            'SELECT persisted_seq FROM sync_client_marks WHERE preview_id = $1 AND client_id = $2',
            [this.hub.previewId, c],
          ),
        ]).then(
          ([w, r]) => {
            const persisted = Math.max(w.persisted, Number(r.rows[0]?.persisted_seq ?? 0));
            const applied = Math.max(w.applied, persisted);
            this.clients.set(c, {
              sent: applied,
              applied,
              enqueued: persisted,
              persisted,
              held: new Map(),
              gapSince: 0,
            });
            this.loading.delete(c);
          },
          (e: unknown) => {
            this.loading.delete(c);
            throw e;
          },
        );
        this.loading.set(c, p);
      }
      return p;
    }

    /**
     * Seqs come from blocks reserved in the shared state. At most one reservation is in flight and its
     * block (`spare`) is used before another is asked for, so seqs only ever increase.
     */
    spare: number | undefined;

    hasSeq(): boolean {
      return this.nextSeq <= this.endSeq || this.spare !== undefined;
    }

    useSpare() {
      if (this.spare === undefined) return;
      this.nextSeq = this.spare;
      this.endSeq = this.spare + SEQ_BLOCK - 1;
      this.spare = undefined;
    }

    refill(): Promise<void> {
      if (this.spare !== undefined) return Promise.resolve();
      this.prefetch ??= state.reserveSeqs(this.hub.previewId, SEQ_BLOCK, this.endSeq).then(
        (first) => {
          this.prefetch = undefined;
          this.spare = first;
        },
        (e) => {
          this.prefetch = undefined;
          throw e;
        },
      );
      return this.prefetch;
    }

    takeSeq(): number {
      if (this.nextSeq > this.endSeq) this.useSpare();
      const seq = this.nextSeq++;
      if (this.endSeq - this.nextSeq < SEQ_BLOCK / 5 && this.spare === undefined && !this.prefetch)
        void this.refill().catch((e) => log.warn({ err: e }, 'seq prefetch failed'));
      return seq;
    }

    process(m: Msg) {
      const cl = this.clients.get(m.c) as ClientMarks;
      if (m.s > cl.sent + 1) {
        // A gap: an earlier batch of this client has not reached us (it was forwarded to an owner that
        // went away). Hold this one until the gap fills; editors re-forward, or reconnect and replay.
        cl.held.set(m.s, m);
        if (!cl.gapSince) cl.gapSince = Date.now();
        return;
      }
      this.processInOrder(cl, m);
      let next = cl.held.get(cl.sent + 1);
      while (next) {
        cl.held.delete(next.s);
        this.processInOrder(cl, next);
        next = cl.held.get(cl.sent + 1);
      }
      // Anything left at or below `sent` is a duplicate.
      for (const k of cl.held.keys()) if (k <= cl.sent) cl.held.delete(k);
      cl.gapSince = cl.held.size ? cl.gapSince || Date.now() : 0;
    }

    processInOrder(cl: ClientMarks, m: Msg) {
      if (m.s <= cl.persisted) {
        this.hub.deliver(m.c, { type: 'ack', seq: m.s, stage: 'applied' });
        this.hub.deliver(m.c, { type: 'ack', seq: cl.persisted, stage: 'persisted' });
        return;
      }
      if (m.s <= cl.sent) {
        // Already in the sandbox (sent by us, or applied under a previous owner).
        if (m.s > cl.enqueued && m.s <= cl.applied) {
          cl.enqueued = m.s;
          this.persister.enqueue({ seq: this.takeSeq(), ops: m.ops ?? [], clientId: m.c, clientSeq: m.s });
        }
        if (m.s <= cl.applied) this.hub.deliver(m.c, { type: 'ack', seq: m.s, stage: 'applied' });
        return;
      }
      cl.sent = m.s;
      if (m.ops === null) {
        // Refused at the edge (the editor got the error): it keeps its place so acks stay exact.
        cl.applied = m.s;
        cl.enqueued = m.s;
        this.persister.enqueue({ seq: this.takeSeq(), ops: [], clientId: m.c, clientSeq: m.s });
        return;
      }
      const seq = this.takeSeq();
      this.inflight.set(seq, { seq, c: m.c, s: m.s, ops: m.ops });
      // The edit goes to the sandbox first; persistence follows its `applied` ack.
      // `origin` lets the sandbox recognise this editor batch if a later owner sends it again.
      this.channel?.send({ type: 'batch', seq, ops: m.ops, origin: { client: m.c, seq: m.s } });
    }

    /** Clients stuck behind a gap for too long: their editors reconnect and replay what is unpersisted. */
    checkGaps() {
      const now = Date.now();
      for (const [c, cl] of this.clients)
        if (cl.gapSince && now - cl.gapSince > gapMs) {
          cl.gapSince = now;
          this.hub.closeClient(c, 'gap in batch order: reconnect and replay');
        }
    }

    onSandboxFrame(f: ServerFrame) {
      switch (f.type) {
        case 'ack': {
          if (f.stage !== 'applied') return;
          // Acks are per batch; anything older still in flight was superseded by this ack's order.
          for (const [seq, inf] of this.inflight) {
            if (seq > f.seq) break;
            this.inflight.delete(seq);
            this.remember(seq, inf);
            const cl = this.clients.get(inf.c);
            if (!cl) continue;
            if (inf.s > cl.applied) cl.applied = inf.s;
            if (inf.s > cl.enqueued) {
              cl.enqueued = inf.s;
              this.persister.enqueue({ seq, ops: inf.ops, clientId: inf.c, clientSeq: inf.s });
            }
            this.hub.deliver(inf.c, { type: 'ack', seq: inf.s, stage: 'applied' });
            void state
              .setWatermark(this.hub.previewId, inf.c, 'applied', inf.s)
              .catch((e) => log.warn({ err: e }, 'applied watermark write failed'));
          }
          return;
        }
        case 'hmr': {
          const o = this.recent.get(f.seq) ?? this.inflight.get(f.seq);
          if (o) this.hub.deliver(o.c, { ...f, seq: o.s });
          return;
        }
        case 'error': {
          const inf = f.seq === undefined ? undefined : this.inflight.get(f.seq);
          if (inf && f.seq !== undefined) {
            // Rejected by the sandbox: nothing of it was written, so nothing is persisted.
            this.inflight.delete(f.seq);
            const cl = this.clients.get(inf.c);
            if (cl && inf.s > cl.applied) cl.applied = inf.s;
            if (cl && inf.s > cl.enqueued) {
              // Nothing to write, but the client's persisted watermark must pass this seq in order.
              cl.enqueued = inf.s;
              this.persister.enqueue({ seq: f.seq, ops: [], clientId: inf.c, clientSeq: inf.s });
            }
            this.hub.deliver(inf.c, { ...f, seq: inf.s });
          } else this.hub.deliver(undefined, f);
          return;
        }
        case 'status':
          this.hub.deliver(undefined, f);
          return;
        default:
          return;
      }
    }

    remember(seq: number, inf: Inflight) {
      this.recent.set(seq, { c: inf.c, s: inf.s });
      if (this.recent.size > 1024) this.recent.delete(this.recent.keys().next().value as number);
    }

    onPersisted(byClient: Map<string, number>) {
      for (const [c, s] of byClient) {
        const cl = this.clients.get(c);
        if (cl && s > cl.persisted) cl.persisted = s;
        // The watermark is written before the ack goes out, so a replay after the ack is de-duplicated.
        state
          .setWatermark(this.hub.previewId, c, 'persisted', s)
          .catch((e) => log.warn({ err: e }, 'persisted watermark write failed'))
          .finally(() => this.hub.deliver(c, { type: 'ack', seq: s, stage: 'persisted' }));
      }
    }

    close(flush: boolean) {
      this.closed = true;
      for (const u of this.unsubs.splice(0)) u();
      const ch = this.channel;
      this.channel = undefined;
      if (flush) void this.persister.drained().then(() => this.persister.close());
      else this.persister.close();
      ch?.close();
    }
  }

  class PreviewHub {
    editors = new Set<Editor>();
    owner: Owner | undefined;
    ownerId: string | undefined;
    unsubscribe: (() => Promise<void>) | undefined;
    ready: Promise<void>;
    timer: ReturnType<typeof setInterval>;
    ticking = false;

    constructor(readonly previewId: string) {
      this.ready = pubsub
        .subscribe(channelName(previewId), (m) => this.onBus(m))
        .then((u) => {
          this.unsubscribe = u;
          return this.tick();
        });
      this.timer = setInterval(() => void this.tick(), Math.max(50, Math.floor(leaseMs / 3)));
      this.timer.unref?.();
    }

    /** Renews our lease, or tries to take a free one, or learns who holds it. */
    async tick(): Promise<void> {
      if (this.ticking || closing) return;
      this.ticking = true;
      try {
        const t0 = Date.now();
        if (this.owner) {
          const owner = this.owner;
          if (!(await state.renew(this.previewId, owner.token, leaseMs))) {
            log.warn({ previewId: this.previewId, replicaId }, 'sync lease lost');
            this.stepDown();
            return;
          }
          owner.held(t0);
          owner.checkGaps();
          if (
            this.editors.size === 0 &&
            Date.now() - owner.lastActivity > ownerIdleMs &&
            owner.inflight.size === 0 &&
            owner.persister.pending === 0
          ) {
            await this.release();
          }
          return;
        }
        if (this.editors.size === 0) {
          this.dispose();
          return;
        }
        const token = newToken();
        if (await state.acquire(this.previewId, token, leaseMs)) await this.becomeOwner(t0, token);
        else {
          // Someone else holds the lease; we may have missed their announcement (we subscribed later).
          this.setOwner(await state.holder(this.previewId));
        }
      } catch (e) {
        log.warn({ previewId: this.previewId, err: e }, 'sync lease tick failed');
      } finally {
        this.ticking = false;
      }
    }

    async becomeOwner(t0: number, token: string) {
      const owner = new Owner(this, token);
      owner.held(t0);
      this.owner = owner;
      try {
        await owner.start();
      } catch (e) {
        this.owner = undefined;
        owner.close(false);
        await state.release(this.previewId, token).catch(() => {});
        throw e;
      }
      log.info({ previewId: this.previewId, replicaId }, 'sync owner');
      this.setOwner(token);
      void pubsub.publish(channelName(this.previewId), { k: 'o', r: token } satisfies BusMessage);
    }

    stepDown() {
      const o = this.owner;
      if (!o) return;
      this.owner = undefined;
      this.ownerId = undefined;
      // Unflushed edits are not written by a replica that lost the lease (the new owner could already
      // be writing newer ones); editors re-forward everything not yet persisted to the new owner.
      o.close(false);
    }

    async release() {
      const o = this.owner;
      if (!o) return;
      this.owner = undefined;
      this.ownerId = undefined;
      o.close(true);
      await o.persister.drained();
      await state.release(this.previewId, o.token);
      this.dispose();
    }

    setOwner(id: string | undefined) {
      if (id === this.ownerId) return;
      this.ownerId = id;
      if (!id) return;
      for (const e of this.editors) for (const f of e.pending) this.forward(e.clientId, f);
    }

    forward(c: string, f: Forwarded) {
      if (this.owner) this.owner.accept({ c, s: f.s, ops: f.ops });
      else if (this.ownerId)
        void pubsub
          .publish(channelName(this.previewId), {
            k: 'b',
            o: this.ownerId,
            c,
            s: f.s,
            ops: f.ops,
          } satisfies BusMessage)
          .catch((e) => log.warn({ err: e }, 'sync publish failed'));
      // With no known owner the batch stays pending and goes out when one is known.
    }

    onBus(raw: unknown) {
      const m = raw as BusMessage;
      if (!m || typeof m !== 'object') return;
      switch (m.k) {
        case 'b':
          if (this.owner && m.o === this.owner.token) this.owner.accept({ c: m.c, s: m.s, ops: m.ops });
          return;
        case 'f':
          if (m.r !== replicaId) this.deliverLocal(m.c, m.f);
          return;
        case 'o':
          if (m.r !== this.owner?.token) {
            if (this.owner) this.stepDown();
            this.setOwner(m.r);
          }
          return;
        case 'x':
          for (const e of this.editors) if (e.clientId === m.c) closeEditor(e, m.code, m.reason);
          return;
      }
    }

    /** Closes client `c`'s editors here and on other replicas (they reconnect and replay). */
    closeClient(c: string, reason: string) {
      for (const e of this.editors) if (e.clientId === c) closeEditor(e, CloseCodes.goingAway, reason);
      void pubsub
        .publish(channelName(this.previewId), {
          k: 'x',
          c,
          code: CloseCodes.goingAway,
          reason,
        } satisfies BusMessage)
        .catch((e) => log.warn({ err: e }, 'sync publish failed'));
    }

    /** Sends a frame to client `c`'s editors (or all), here and on other replicas. */
    deliver(c: string | undefined, f: ServerFrame) {
      const here = this.deliverLocal(c, f);
      if (c === undefined || !here)
        void pubsub
          .publish(channelName(this.previewId), { k: 'f', r: replicaId, c, f } satisfies BusMessage)
          .catch((e) => log.warn({ err: e }, 'sync publish failed'));
    }

    deliverLocal(c: string | undefined, f: ServerFrame): boolean {
      let found = false;
      for (const e of this.editors) {
        if (c !== undefined && e.clientId !== c) continue;
        found = true;
        if (f.type === 'ack' && f.stage === 'persisted') {
          // Persisted acks are cumulative for a client: drop everything up to it.
          let n = 0;
          while (n < e.pending.length && (e.pending[n] as Forwarded).s <= f.seq) n++;
          if (n) e.pending.splice(0, n);
        }
        sendTo(e, f);
      }
      return found;
    }

    dispose() {
      if (this.editors.size || this.owner) return;
      clearInterval(this.timer);
      previews.delete(this.previewId);
      void this.ready.then(() => this.unsubscribe?.()).catch(() => {});
    }
  }

  function sendTo(e: Editor, f: ServerFrame | ErrorFrame) {
    if (e.closed) return;
    if (e.socket.bufferedAmount > maxBuffered) {
      closeEditor(e, CloseCodes.slowConsumer, 'slow consumer: reconnect and replay');
      return;
    }
    e.socket.send(JSON.stringify(f));
  }

  function closeEditor(e: Editor, code: number, reason: string) {
    if (e.closed) return;
    e.closed = true;
    try {
      e.socket.close(code, reason);
    } catch {
      // already closed
    }
  }

  function hubFor(previewId: string): PreviewHub {
    let h = previews.get(previewId);
    if (!h) {
      h = new PreviewHub(previewId);
      previews.set(previewId, h);
    }
    return h;
  }

  function onEditorFrame(h: PreviewHub, e: Editor, text: string | undefined, bytes: number) {
    if (e.closed) return;
    if (text === undefined) {
      sendTo(e, {
        type: 'error',
        code: 'invalid_frame',
        message: 'binary frames are not accepted; send JSON text',
      });
      return;
    }
    if (bytes > LIMITS.frameBytes) {
      closeEditor(e, CloseCodes.tooBig, `frame over ${LIMITS.frameBytes} bytes`);
      return;
    }
    if (!e.ready) {
      e.early.push({ text, bytes });
      if (e.early.length > 10_000)
        closeEditor(e, CloseCodes.overloaded, 'too many frames before hello completed');
      return;
    }
    const r = parseFrame(ClientFrame, text);
    if (!r.ok) {
      sendTo(e, r.error);
      const seq = r.error.seq;
      if (seq !== undefined && seq > e.lastSeq && text.includes('"batch"')) {
        // A refused batch keeps its place in the client's order (acks are cumulative).
        e.lastSeq = seq;
        const fw: Forwarded = { s: seq, ops: null };
        e.pending.push(fw);
        h.forward(e.clientId, fw);
      }
      return;
    }
    const f = r.value;
    switch (f.type) {
      case 'ping':
        sendTo(e, { type: 'pong', ...(f.t === undefined ? {} : { t: f.t }) });
        return;
      case 'pong':
        return;
      case 'hello':
        sendTo(e, {
          type: 'error',
          code: 'invalid_frame',
          message: 'hello: only allowed as the first frame',
        });
        return;
      case 'batch': {
        if (f.seq <= e.lastSeq) {
          sendTo(e, {
            type: 'error',
            code: 'seq_out_of_order',
            seq: f.seq,
            message: `seq: must increase on a connection (got ${f.seq} after ${e.lastSeq})`,
          });
          return;
        }
        e.lastSeq = f.seq;
        if (e.pending.length >= maxPending) {
          closeEditor(e, CloseCodes.overloaded, 'too many batches not yet persisted: reconnect and replay');
          return;
        }
        const fw = { s: f.seq, ops: f.ops };
        e.pending.push(fw);
        h.forward(e.clientId, fw);
        return;
      }
    }
  }

  async function onHello(h: PreviewHub, e: Editor, text: string | undefined) {
    let lastAcked = 0;
    if (text !== undefined) {
      const r = parseFrame(ClientFrame, text);
      if (r.ok && r.value.type === 'hello') {
        if (r.value.clientId) e.clientId = r.value.clientId;
        lastAcked = r.value.lastAckedSeq;
      } else e.early.unshift({ text, bytes: text.length });
    }
    await h.ready;
    // Replay what the client missed: the acks of batches that progressed while it was away.
    const w = await state.getWatermarks(h.previewId, e.clientId);
    e.lastSeq = 0;
    if (w.applied > 0) sendTo(e, { type: 'ack', seq: w.applied, stage: 'applied' });
    if (w.persisted > 0 && w.persisted >= lastAcked)
      sendTo(e, { type: 'ack', seq: w.persisted, stage: 'persisted' });
    e.ready = true;
    for (const x of e.early.splice(0)) onEditorFrame(h, e, x.text, x.bytes);
  }

  /** Serves one already-authorised editor socket. */
  function handleSocket(socket: SyncSocket, ctx: ConnectionContext): void {
    if (closing) {
      socket.close(CloseCodes.goingAway, 'router shutting down');
      return;
    }
    const h = hubFor(ctx.previewId);
    const e: Editor = {
      id: randomUUID(),
      socket,
      userId: ctx.userId,
      clientId: `anon-${randomUUID()}`,
      lastSeq: 0,
      ready: false,
      early: [],
      pending: [],
      closed: false,
    };
    h.editors.add(e);
    let first = true;
    socket.onMessage((text, bytes) => {
      if (!first) return onEditorFrame(h, e, text, bytes);
      first = false;
      void onHello(h, e, text).catch((err) => {
        log.warn({ previewId: ctx.previewId, err }, 'sync hello failed');
        closeEditor(e, CloseCodes.goingAway, 'hello failed; reconnect');
      });
    });
    socket.onClose(() => {
      e.closed = true;
      h.editors.delete(e);
    });
  }

  return {
    replicaId,
    handleSocket,
    /** Serves one already-authorised `ws` socket (the router checked the token and ownership). */
    handleConnection(ws: WebSocket, ctx: ConnectionContext): void {
      handleSocket(adaptWs(ws), ctx);
    },
    /** Test and diagnostics view: previews this replica owns. */
    owned(): string[] {
      return [...previews.values()].filter((p) => p.owner).map((p) => p.previewId);
    },
    /** Resolves when every owned preview's write-behind queue is empty. */
    async drained(): Promise<void> {
      await Promise.all([...previews.values()].map((p) => p.owner?.persister.drained()));
    },
    async close(): Promise<void> {
      closing = true;
      const all = [...previews.values()];
      for (const p of all)
        for (const e of p.editors) closeEditor(e, CloseCodes.goingAway, 'router shutting down');
      await Promise.all(
        all.map(async (p) => {
          clearInterval(p.timer);
          await p.release().catch(() => {});
          await p.unsubscribe?.().catch(() => {});
        }),
      );
      previews.clear();
    },
  };
}
export type SyncHub = ReturnType<typeof createSyncHub>;

/** Adapts a `ws` server-side socket to `SyncSocket`. */
export function adaptWs(ws: WebSocket): SyncSocket {
  return {
    send: (t) => ws.send(t),
    close: (code, reason) => ws.close(code, reason),
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    onMessage: (l) =>
      ws.on('message', (data, isBinary) => {
        const bytes = Array.isArray(data)
          ? data.reduce((n, b) => n + b.length, 0)
          : (data as Buffer | ArrayBuffer).byteLength;
        l(isBinary ? undefined : data.toString(), bytes);
      }),
    onClose: (l) => {
      // ws reports protocol violations (e.g. a frame over maxPayload) as 'error' and then closes
      // with the matching code (1009); the close is what we act on.
      ws.on('error', () => {});
      ws.on('close', () => l());
    },
  };
}
