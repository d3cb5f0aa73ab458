import { randomUUID } from 'node:crypto';
import { CloseCodes, type FileBatch, type SyncChannel, TierUnavailableError } from '@preview/tiers';
import type pg from 'pg';
import type { WebSocket } from 'ws';
import type { PubSub } from '../infra/pubsub.ts';
import { createPgSyncStore, type SyncStore } from '../store/project-files.ts';
import type { SubmitResult } from './batch-waiter.ts';
import { SyncBus } from './bus.ts';
import { adaptWs, EditorConnection, type SyncLogger, type SyncSocket } from './editor-socket.ts';
import { SyncOwner } from './owner.ts';
import type { Clock } from './owner-fence.ts';
import { PreviewHub } from './preview-hub.ts';
import type { SyncState } from './state.ts';

export type { SyncLogger, SyncSocket } from './editor-socket.ts';

export interface SyncHubDeps {
  /** Postgres: the hub builds its `SyncStore` on it unless `store` is given. */
  pool?: pg.Pool;
  /** Where the hub reads seq floors and client marks and writes project files. */
  store?: SyncStore;
  pubsub: PubSub;
  state: SyncState;
  /**
   * Opens the tier's live channel to the preview's sandbox (`tier.openSync(previewId)`), or `null`
   * for a preview with no server sandbox (browser tier): its edits are persisted as accepted and
   * acked `persisted` only; `applied` comes from the editor's own runtime.
   */
  openChannel(previewId: string): Promise<SyncChannel | null>;
  log: SyncLogger;
  /** @default Date */
  clock?: Clock;
  /** Identifies this router replica in leases and bus messages (random by default). */
  replicaId?: string;
  /** Owner lease TTL in ms; renewed every third of it. @default 5000 */
  leaseMs?: number;
  /** An editor socket with more than this many bytes unsent is closed with `slowConsumer`. @default 8 MiB */
  maxBufferedBytes?: number;
  /** Batches an editor may have forwarded but not yet persisted before it is closed with `overloaded`. @default 4096 */
  maxPendingBatches?: number;
  /** Coalescing window of the write-behind queue, in ms. @default 5 */
  persistDelayMs?: number;
  /**
   * Coalescing window, in ms, for an editor's batches that the sandbox applied: the editor has its
   * `applied` ack, and the flush (a Postgres transaction in this process) waits until the page's
   * HMR module fetch, which this process proxies, has gone by. An HTTP caller's batch, which waits
   * for `persisted`, and a browser-tier preview's take `persistDelayMs`. @default 50
   */
  appliedPersistDelayMs?: number;
  /** An owner with no traffic for this long (ms) releases its lease and channel. @default 60000 */
  ownerIdleMs?: number;
  /**
   * Called when an editor connects to a preview and on each frame an editor sends to its owner (a
   * batch): the router wakes a suspended preview there (`createWaker`), so the edit is applied once
   * the sandbox is back. Must not throw; it is not awaited.
   */
  wake?: (previewId: string) => void;
  /**
   * Called with the sandbox's edit → update time (ms, its `hmr` report) for each update an owner on
   * this replica relays (the edit-to-update metric). Must not throw.
   */
  onHmr?: (ms: number) => void;
}

export interface ConnectionContext {
  previewId: string;
  userId: string;
}

/**
 * The router's sync hub: one WebSocket per editor per preview, ordered delivery to the preview's
 * sandbox through exactly one owner replica, acks back to the editor, write-behind persistence.
 * See `README.md` in this folder for the protocol and its guarantees, and the modules it is made
 * of: `preview-hub.ts` (lease and routing), `owner.ts` (the owner), `client-order.ts`,
 * `seq-blocks.ts`, `owner-fence.ts`, `bus.ts`, `editor-socket.ts`, `persister.ts`.
 *
 * @throws TypeError when neither `pool` nor `store` is given.
 * @example
 * const hub = createSyncHub({ pool, pubsub, state, openChannel: (id) => tiers.docker.openSync(id), log });
 * wss.on('connection', (ws, req) => hub.handleConnection(ws, { previewId, userId }));
 */
export function createSyncHub(deps: SyncHubDeps) {
  const store = deps.store ?? (deps.pool ? createPgSyncStore(deps.pool) : undefined);
  if (!store) throw new TypeError('createSyncHub: deps.pool or deps.store is required');
  const replicaId = deps.replicaId ?? randomUUID();
  const clock = deps.clock ?? Date;
  const leaseMs = deps.leaseMs ?? 5000;
  const limits = {
    maxBufferedBytes: deps.maxBufferedBytes ?? 8 * 1024 * 1024,
    maxPendingBatches: deps.maxPendingBatches ?? 4096,
  };
  const { log, state } = deps;
  const previews = new Map<string, PreviewHub>();
  let epochs = 0;
  let closing = false;

  const newOwner = (hub: PreviewHub, token: string) =>
    new SyncOwner({
      previewId: hub.previewId,
      token,
      leaseMs,
      gapMs: Math.max(1000, leaseMs),
      persistDelayMs: deps.persistDelayMs ?? 5,
      appliedPersistDelayMs: deps.appliedPersistDelayMs ?? 50,
      clock,
      state,
      store,
      openChannel: deps.openChannel,
      log,
      deliver: (client, f) => hub.deliver(client, f),
      ...(deps.onHmr ? { onHmr: deps.onHmr } : {}),
      closeClient: (client, reason) => hub.closeClient(client, reason),
      stepDown: () => hub.stepDown(),
      ended: (reason) => hub.end(reason),
    });

  function hubFor(previewId: string): PreviewHub {
    let h = previews.get(previewId);
    if (!h) {
      h = new PreviewHub({
        previewId,
        replicaId,
        leaseMs,
        ownerIdleMs: deps.ownerIdleMs ?? 60_000,
        clock,
        state,
        bus: new SyncBus({ pubsub: deps.pubsub, previewId, log }),
        log,
        newToken: () => `${replicaId}#${++epochs}`,
        newOwner,
        closing: () => closing,
        dispose: (id) => previews.delete(id),
      });
      previews.set(previewId, h);
    }
    return h;
  }

  /** Answers the hello with the acks the client missed, then lets its frames through. */
  async function hello(h: PreviewHub, e: EditorConnection, text: string | undefined): Promise<void> {
    const lastAcked = e.hello(text);
    await h.ready;
    const w = await state.getWatermarks(h.previewId, e.clientId);
    if (w.applied > 0) e.send({ type: 'ack', seq: w.applied, stage: 'applied' });
    if (w.persisted > 0 && w.persisted >= lastAcked)
      e.send({ type: 'ack', seq: w.persisted, stage: 'persisted' });
    for (const fw of e.open()) h.forward(e.clientId, fw);
  }

  /** Serves one already-authorised editor socket. */
  function handleSocket(socket: SyncSocket, ctx: ConnectionContext): void {
    if (closing) {
      socket.close(CloseCodes.goingAway, 'router shutting down');
      return;
    }
    const h = hubFor(ctx.previewId);
    const e = new EditorConnection(socket, limits);
    h.editors.add(e);
    deps.wake?.(ctx.previewId);
    let first = true;
    socket.onMessage((text, bytes) => {
      if (!first) {
        const fw = e.receive(text, bytes);
        if (fw) {
          deps.wake?.(ctx.previewId);
          h.forward(e.clientId, fw);
        }
        return;
      }
      first = false;
      hello(h, e, text).catch((err: unknown) => {
        log.warn({ previewId: ctx.previewId, err }, 'sync hello failed');
        e.close(CloseCodes.goingAway, 'hello failed; reconnect');
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
    /**
     * The one write path for a batch that does not come from an editor socket (`PUT /files`):
     * client `HTTP_CLIENT`, same validation, order, sandbox and persistence as editor batches.
     * Resolves once the sandbox applied it and it is committed; rejects with the refusal
     * (`InvalidInputError` for bad input, `ConflictError` `stale_seq`/`duplicate_seq`/`preview_ended`,
     * `TimeoutError` past `signal`).
     */
    async submit(
      previewId: string,
      batch: FileBatch,
      o: { signal?: AbortSignal } = {},
    ): Promise<SubmitResult> {
      if (closing) throw new TierUnavailableError('shutting_down', 'router shutting down', { tier: 'sync' });
      return await hubFor(previewId).submit(
        { seq: batch.seq, ops: batch.ops },
        o.signal ?? AbortSignal.timeout(30_000),
      );
    },
    /**
     * The preview ended: editors on every replica are closed with `ended`, and the owner lets go
     * after persisting what the sandbox applied; nothing retries against its sandbox.
     */
    end(previewId: string, reason = `preview ${previewId} ended`): void {
      const h = previews.get(previewId);
      if (h) h.end(reason);
      else new SyncBus({ pubsub: deps.pubsub, previewId, log }).publish({ kind: 'end', reason });
    },
    /**
     * The preview moved to another tier under the same id (browser → docker): its owner flushes and
     * lets go, its editors on every replica reconnect and replay toward the new tier's channel.
     * Resolves once this replica's owner (if it is one) has flushed.
     */
    async moved(previewId: string, reason = `preview ${previewId} moved`): Promise<void> {
      const h = previews.get(previewId);
      if (h) await h.moved(reason.slice(0, 123));
      else
        new SyncBus({ pubsub: deps.pubsub, previewId, log }).publish({
          kind: 'moved',
          reason: reason.slice(0, 123),
        });
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
      await Promise.all(all.map((p) => p.shutdown()));
      previews.clear();
    },
  };
}
export type SyncHub = ReturnType<typeof createSyncHub>;
