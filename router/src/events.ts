import type { SessionState, TierName } from '@preview/tiers';
import type { PubSub } from './infra/pubsub.ts';
import type { SessionStore } from './store/sessions.ts';

/** What the SSE stream and the status page show. */
export type PreviewEvent =
  | { type: 'state'; state: SessionState; tier?: TierName | null; error?: string | null; at: number }
  | {
      type: 'status';
      phase: 'installing' | 'starting' | 'ready' | 'error' | 'suspended';
      message?: string;
      at: number;
    }
  | { type: 'log'; lines: string[]; at: number };

/**
 * Status and log events of previews: appended to the bounded `preview_events` log (so a late
 * subscriber and any replica can show the recent past) and fanned out over pub/sub.
 */
export class EventHub {
  readonly #store: SessionStore;
  readonly #pubsub: PubSub;
  readonly #onState: ((state: string) => void) | undefined;
  readonly #onFanOutError: (err: unknown, previewId: string) => void;
  /**
   * @param hooks.onState called once per `state` event this replica publishes (the state-change
   *   metric); must not throw
   * @param hooks.onFanOutError called when the pub/sub fan-out of a stored event fails (Redis down or
   *   restarting). The event is in `preview_events` already, so the failure is not thrown: SSE
   *   streams read the log on every wake and keep-alive and catch up by themselves.
   * @default hooks.onFanOutError ignores the failure
   */
  constructor(
    store: SessionStore,
    pubsub: PubSub,
    hooks: {
      onState?: (state: string) => void;
      onFanOutError?: (err: unknown, previewId: string) => void;
    } = {},
  ) {
    this.#store = store;
    this.#pubsub = pubsub;
    this.#onState = hooks.onState;
    this.#onFanOutError = hooks.onFanOutError ?? (() => {});
  }

  /** Stores `event` in the preview's log, then fans it out (a failed fan-out is reported, not thrown). */
  async publish(previewId: string, event: PreviewEvent): Promise<void> {
    const { type, ...data } = event;
    await this.#store.appendEvent(previewId, type, data);
    await this.broadcast(previewId, event);
  }

  /**
   * Fan-out only, for an event already stored (e.g. by a transition in the same statement). A failed
   * fan-out goes to `onFanOutError` and does not throw: the stored event is what streams read.
   */
  async broadcast(previewId: string, event: PreviewEvent): Promise<void> {
    if (event.type === 'state') this.#onState?.(event.state);
    try {
      await this.#pubsub.publish(`events:${previewId}`, event);
    } catch (err) {
      this.#onFanOutError(err, previewId);
    }
  }

  /**
   * Stored events of the preview after event id `afterId` (0: from the oldest kept), oldest first,
   * each with its `preview_events` id (the SSE `id:`). At most `limit`.
   * @default limit 200
   */
  async after(
    previewId: string,
    afterId: number,
    limit = 200,
  ): Promise<Array<{ id: number; event: PreviewEvent }>> {
    const rows = await this.#store.eventsAfter(previewId, afterId, limit);
    return rows.map((r) => ({ id: r.id, event: toEvent(r) }));
  }

  /** The last `limit` stored events of the preview with their ids, oldest first. @default limit 50 */
  async recentWithIds(previewId: string, limit = 50): Promise<Array<{ id: number; event: PreviewEvent }>> {
    const rows = await this.#store.recentEvents(previewId, limit);
    return rows.map((r) => ({ id: r.id, event: toEvent(r) }));
  }

  subscribe(previewId: string, listener: (e: PreviewEvent) => void): Promise<() => Promise<void>> {
    return this.#pubsub.subscribe(`events:${previewId}`, (m) => listener(m as PreviewEvent));
  }

  async recent(previewId: string, limit = 50): Promise<PreviewEvent[]> {
    const rows = await this.#store.recentEvents(previewId, limit);
    return rows.map(toEvent);
  }

  /** The last `n` log lines in the recent events (status page). */
  async lastLogLines(previewId: string, n = 30): Promise<string[]> {
    const lines: string[] = [];
    for (const e of await this.recent(previewId, 100)) if (e.type === 'log') lines.push(...e.lines);
    return lines.slice(-n);
  }
}

/** The key order events are built in (a jsonb column keeps its own order: shortest key first). */
const KEY_ORDER = ['state', 'phase', 'tier', 'error', 'message', 'lines'];

/**
 * A `preview_events` row as the event it stored, keys in the order the event was built in
 * (`type`, `state`/`phase`, ..., `at`), as a live event reads.
 */
function toEvent(r: { kind: string; data: Record<string, unknown>; at: Date }): PreviewEvent {
  const rank = (k: string) => (KEY_ORDER.includes(k) ? KEY_ORDER.indexOf(k) : KEY_ORDER.length);
  const keys = Object.keys(r.data)
    .filter((k) => k !== 'at' && k !== 'type')
    .sort((x, y) => rank(x) - rank(y));
  const e: Record<string, unknown> = { type: r.kind };
  for (const k of keys) e[k] = r.data[k];
  e['at'] = r.data['at'] ?? r.at.getTime();
  return e as PreviewEvent;
}
