import { createRealtimeBridge, type RealtimeBridge, type RealtimeBridgeOptions } from './bridge.ts';

/** One bridge per preview, started on demand; what the router holds when Realtime replaces its sync socket. */
export interface RealtimeBridgeSet {
  /** Starts the preview's bridge if it is not running; resolves once it has joined the channel. */
  ensure(previewId: string): Promise<RealtimeBridge>;
  /** Stops the preview's bridge. Repeat-safe: `false` when none was running. */
  stop(previewId: string): Promise<boolean>;
  /** Previews with a running bridge. */
  running(): string[];
  close(): Promise<void>;
}

/**
 * Keeps one `createRealtimeBridge` per preview. Run it on exactly one router replica per preview (the
 * one that owns the preview's sync, as the hub's owner lease decides): two bridges on one channel
 * would both forward every batch.
 *
 * @example
 * const bridges = createRealtimeBridgeSet({
 *   joinChannel: (topic) => service.channel(topic, { config: { broadcast: { ack: true, self: false } } }),
 *   openChannel: (id) => tiers.docker.openSync(id),
 * });
 * await bridges.ensure(previewId); // on create / resume
 * await bridges.stop(previewId); // on stop
 */
export function createRealtimeBridgeSet(
  options: Omit<RealtimeBridgeOptions, 'previewId'>,
): RealtimeBridgeSet {
  const bridges = new Map<string, RealtimeBridge>();
  return {
    async ensure(previewId) {
      let b = bridges.get(previewId);
      if (!b) {
        b = createRealtimeBridge({ ...options, previewId });
        bridges.set(previewId, b);
      }
      try {
        await b.ready;
      } catch (e) {
        if (bridges.get(previewId) === b) bridges.delete(previewId);
        await b.close();
        throw e;
      }
      return b;
    },
    async stop(previewId) {
      const b = bridges.get(previewId);
      if (!b) return false;
      bridges.delete(previewId);
      await b.close();
      return true;
    },
    running: () => [...bridges.keys()],
    async close() {
      const all = [...bridges.values()];
      bridges.clear();
      const results = await Promise.allSettled(all.map((b) => b.close()));
      const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
      if (errors.length) throw new AggregateError(errors, 'closing realtime bridges');
    },
  };
}
