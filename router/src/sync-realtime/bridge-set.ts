import { randomUUID } from 'node:crypto';
import { NotFoundError, TierUnavailableError } from '@preview/tiers';
import type { Leases } from '../infra/lease.ts';
import { createRealtimeBridge, type RealtimeBridge, type RealtimeBridgeOptions } from './bridge.ts';

export interface RealtimeBridgeSetOptions
  extends Pick<
    RealtimeBridgeOptions,
    'realtime' | 'private' | 'hub' | 'maxMessageBytes' | 'reassembly' | 'maxEditors' | 'log'
  > {
  /** Leases shared by the replicas (Redis, or in-process for one router); key `rt-bridge:<previewId>`. */
  leases: Leases;
  /**
   * Checks the editor token of each hello (see `RealtimeBridgeOptions.verifyEditor`) for the preview
   * and its owner; the router verifies an `editor` access token bound to the preview, owner and
   * editor id.
   */
  verifyEditor(
    token: string | undefined,
    editor: { previewId: string; userId: string; editorId: string },
  ): Promise<boolean>;
  /**
   * The preview's owner while it should have a bridge (live on a server tier, not suspended);
   * `undefined` when it should not (then the watch ends).
   */
  lookup(previewId: string): Promise<{ userId: string } | undefined>;
  /**
   * Calls `onEnd` when the preview stops being live on any replica (ended, failed, suspended);
   * resolves to the unsubscribe function.
   */
  watchEnd?(previewId: string, onEnd: () => void): Promise<() => Promise<void>>;
  /** Identifies this replica in lease values (random by default). */
  replicaId?: string;
  /** Lease TTL; renewed (or, by a standby, retried) every third of it. Default 5000. */
  leaseMs?: number;
}

/** Where the preview's bridge runs, as far as this replica knows after `ensure`. */
export type BridgePlace = 'here' | 'elsewhere';

/**
 * Exactly one Realtime bridge per preview across router replicas: what the router holds when
 * Supabase Realtime carries editors' sync frames.
 */
export interface RealtimeBridgeSet {
  /**
   * Makes sure a bridge runs for the preview: here if the lease `rt-bridge:<id>` is free (resolves
   * once the channel is joined), else on the replica holding it. Either way this replica keeps
   * watching and takes over when the holder's lease lapses. `NotFoundError` when the preview has no
   * live server-side sandbox.
   */
  ensure(previewId: string): Promise<BridgePlace>;
  /** Stops watching the preview (and its bridge, if it runs here); repeat-safe: `false` when not watched. */
  stop(previewId: string): Promise<boolean>;
  /** Previews whose bridge runs on this replica. */
  running(): string[];
  /** Previews this replica watches (running here, or standing by). */
  watching(): string[];
  /** Stops every bridge and releases every lease (shutdown). */
  close(): Promise<void>;
}

/** Fraction of the lease TTL during which the holder acts on it (the rest is the clock-skew margin). */
const LEASE_SAFETY = 0.7;

/**
 * Keeps the Realtime bridges of the previews this replica was asked about. Each preview is watched
 * with a lease `rt-bridge:<previewId>` (value `<replicaId>#<epoch>`, PX TTL `leaseMs`): the holder
 * runs the bridge and renews every third of the TTL; other watchers retry the lease at the same pace
 * and the first to get a lapsed one starts a bridge. A holder whose renewal fails stops its bridge;
 * a bridge only relays while `now < t(renew sent) + 0.7·TTL` (fencing), so a stalled replica goes
 * quiet before anyone else can hold the lease.
 *
 * @example
 * const bridges = createRealtimeBridgeSet({ realtime: service, hub, leases, lookup });
 * await bridges.ensure(previewId); // on create / resume, and from POST /v1/previews/:id/realtime
 * await bridges.close(); // on shutdown
 */
export function createRealtimeBridgeSet(o: RealtimeBridgeSetOptions): RealtimeBridgeSet {
  if (!o.leases) throw new TypeError('options.leases: required (createRedisLeases or createMemoryLeases)');
  if (typeof o.lookup !== 'function') throw new TypeError('options.lookup: must be a function');
  if (typeof o.verifyEditor !== 'function')
    throw new TypeError('options.verifyEditor: must be a function (editor tokens are checked per hello)');
  const leaseMs = o.leaseMs ?? 5000;
  if (!Number.isInteger(leaseMs) || leaseMs < 30) throw new RangeError('options.leaseMs: integer ≥ 30');
  const replicaId = o.replicaId ?? randomUUID();
  const log = o.log;
  const watches = new Map<string, Watch>();
  let epochs = 0;
  let closing = false;

  class Watch {
    readonly key: string;
    readonly token = `${replicaId}#${++epochs}`;
    bridge: RealtimeBridge | undefined;
    heldUntil = 0;
    ended = false;
    ticking: Promise<void> | undefined;
    unsubscribe: (() => Promise<void>) | undefined;
    readonly timer: ReturnType<typeof setInterval>;

    constructor(readonly previewId: string) {
      this.key = `rt-bridge:${previewId}`;
      this.timer = setInterval(() => void this.tick(), Math.max(10, Math.floor(leaseMs / 3)));
      this.timer.unref();
    }

    valid(): boolean {
      return !this.ended && Date.now() < this.heldUntil;
    }

    /** One lease step at a time: renew if we run the bridge, else try to take the lease. */
    tick(): Promise<void> {
      if (!this.ticking)
        this.ticking = this.step()
          .catch((err: unknown) =>
            log?.warn({ previewId: this.previewId, err }, 'realtime bridge lease step failed'),
          )
          .finally(() => {
            this.ticking = undefined;
          });
      return this.ticking;
    }

    async step(): Promise<void> {
      if (this.ended) return;
      const t0 = Date.now();
      if (this.bridge) {
        if (await o.leases.renew(this.key, this.token, leaseMs).catch(() => false)) {
          this.heldUntil = t0 + leaseMs * LEASE_SAFETY;
          return;
        }
        log?.warn({ previewId: this.previewId }, 'realtime bridge lease lost; standing by');
        await this.stopBridge();
        return;
      }
      if (!(await o.leases.acquire(this.key, this.token, leaseMs))) return;
      this.heldUntil = t0 + leaseMs * LEASE_SAFETY;
      let owner: { userId: string } | undefined;
      try {
        owner = await o.lookup(this.previewId);
      } catch (e) {
        // Unknown whether it is live: let another replica (or our next step) try.
        await o.leases.release(this.key, this.token).catch(() => {});
        throw e;
      }
      if (!owner || this.ended) {
        await this.end();
        // end() may have run (and released) while we were acquiring.
        await o.leases.release(this.key, this.token).catch(() => {});
        return;
      }
      const bridge = createRealtimeBridge({
        previewId: this.previewId,
        userId: owner.userId,
        realtime: o.realtime,
        ...(o.private !== undefined ? { private: o.private } : {}),
        hub: o.hub,
        verifyEditor: (token, editorId) =>
          o.verifyEditor(token, { previewId: this.previewId, userId: owner.userId, editorId }),
        fence: () => this.valid(),
        ...(o.maxMessageBytes !== undefined ? { maxMessageBytes: o.maxMessageBytes } : {}),
        ...(o.reassembly !== undefined ? { reassembly: o.reassembly } : {}),
        ...(o.maxEditors !== undefined ? { maxEditors: o.maxEditors } : {}),
        ...(log ? { log } : {}),
      });
      this.bridge = bridge;
      try {
        await bridge.ready;
        log?.info({ previewId: this.previewId, replicaId }, 'realtime bridge running');
      } catch (e) {
        if (this.bridge === bridge) this.bridge = undefined;
        await bridge.close();
        await o.leases.release(this.key, this.token).catch(() => {});
        throw e;
      }
    }

    async stopBridge() {
      const b = this.bridge;
      this.bridge = undefined;
      this.heldUntil = 0;
      await b?.close();
    }

    async end() {
      if (this.ended) return;
      this.ended = true;
      clearInterval(this.timer);
      if (watches.get(this.previewId) === this) watches.delete(this.previewId);
      await this.stopBridge();
      await o.leases.release(this.key, this.token).catch(() => {});
      await this.unsubscribe?.().catch(() => {});
    }
  }

  return {
    async ensure(previewId) {
      if (closing) throw new NotFoundError('shutting_down', 'realtime bridges are shutting down');
      let w = watches.get(previewId);
      if (!w) {
        const watch = new Watch(previewId);
        w = watch;
        watches.set(previewId, watch);
        if (o.watchEnd)
          watch.unsubscribe = await o.watchEnd(previewId, () => {
            void watch.end();
          });
      }
      await w.tick();
      if (w.bridge) {
        await w.bridge.ready;
        return 'here';
      }
      if (w.ended)
        throw new NotFoundError('not_found', `preview ${previewId} has no live server-side sandbox`);
      if (!(await o.leases.holder(w.key)))
        throw new TierUnavailableError(
          'realtime_unavailable',
          `no realtime bridge could start for preview ${previewId}`,
          { tier: 'realtime' },
        );
      return 'elsewhere';
    },
    async stop(previewId) {
      const w = watches.get(previewId);
      if (!w) return false;
      await w.end();
      return true;
    },
    running: () => [...watches.values()].filter((w) => w.bridge).map((w) => w.previewId),
    watching: () => [...watches.keys()],
    async close() {
      closing = true;
      const all = [...watches.values()];
      const results = await Promise.allSettled(all.map((w) => w.end()));
      const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
      if (errors.length) throw new AggregateError(errors, 'closing realtime bridges');
    },
  };
}
