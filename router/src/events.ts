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
  /**
   * @param onState called once per `state` event this replica publishes (the state-change metric);
   *   must not throw
   */
  constructor(store: SessionStore, pubsub: PubSub, onState?: (state: string) => void) {
    this.#store = store;
    this.#pubsub = pubsub;
    this.#onState = onState;
  }

  async publish(previewId: string, event: PreviewEvent): Promise<void> {
    const { type, ...data } = event;
    await this.#store.appendEvent(previewId, type, data);
    if (event.type === 'state') this.#onState?.(event.state);
    await this.#pubsub.publish(`events:${previewId}`, event);
  }

  /** Fan-out only, for an event already stored (e.g. by a transition in the same statement). */
  async broadcast(previewId: string, event: PreviewEvent): Promise<void> {
    if (event.type === 'state') this.#onState?.(event.state);
    await this.#pubsub.publish(`events:${previewId}`, event);
  }

  subscribe(previewId: string, listener: (e: PreviewEvent) => void): Promise<() => Promise<void>> {
    return this.#pubsub.subscribe(`events:${previewId}`, (m) => listener(m as PreviewEvent));
  }

  async recent(previewId: string, limit = 50): Promise<PreviewEvent[]> {
    const rows = await this.#store.recentEvents(previewId, limit);
    return rows.map((r) => ({ type: r.kind, ...r.data, at: r.data['at'] ?? r.at.getTime() }) as PreviewEvent);
  }

  /** The last `n` log lines in the recent events (status page). */
  async lastLogLines(previewId: string, n = 30): Promise<string[]> {
    const lines: string[] = [];
    for (const e of await this.recent(previewId, 100)) if (e.type === 'log') lines.push(...e.lines);
    return lines.slice(-n);
  }
}
