import { describe, expect, it } from 'vitest';
import { EventHub } from './events.ts';
import { createMemoryPubSub, type PubSub } from './infra/pubsub.ts';
import type { SessionStore } from './store/sessions.ts';

/** A store that keeps appended events in memory (only what EventHub.publish and after() use). */
function memoryStore() {
  const rows: Array<{ id: number; kind: string; data: Record<string, unknown>; at: Date }> = [];
  const store = {
    async appendEvent(_id: string, kind: string, data: Record<string, unknown>) {
      rows.push({ id: rows.length + 1, kind, data: JSON.parse(JSON.stringify(data)), at: new Date(0) });
    },
    async eventsAfter(_id: string, afterId: number) {
      return rows.filter((r) => r.id > afterId);
    },
  };
  return { rows, store: store as unknown as SessionStore };
}

describe('EventHub', () => {
  it('a failed fan-out (Redis down) is reported, not thrown: the event is stored and readable', async () => {
    const { rows, store } = memoryStore();
    const down: PubSub = {
      publish: async () => {
        throw new Error('Connection is closed.');
      },
      subscribe: async () => async () => {},
      close: async () => {},
    };
    const failures: Array<{ err: unknown; previewId: string }> = [];
    const states: string[] = [];
    const hub = new EventHub(store, down, {
      onState: (state) => states.push(state),
      onFanOutError: (err, previewId) => failures.push({ err, previewId }),
    });
    await hub.publish('p1', { type: 'state', state: 'migrating', at: 5 });
    await hub.broadcast('p1', { type: 'state', state: 'ready', at: 6 });
    expect(rows).toHaveLength(1);
    expect(states).toEqual(['migrating', 'ready']);
    expect(failures.map((f) => [f.previewId, (f.err as Error).message])).toEqual([
      ['p1', 'Connection is closed.'],
      ['p1', 'Connection is closed.'],
    ]);
    expect(await hub.after('p1', 0)).toEqual([
      { id: 1, event: { type: 'state', state: 'migrating', at: 5 } },
    ]);
  });

  it('stored events read back with `type` first, then state or phase, and `at` last', async () => {
    const { store } = memoryStore();
    const hub = new EventHub(store, createMemoryPubSub());
    // Stored as jsonb would return it: shortest keys first.
    await store.appendEvent('p1', 'state', { at: 7, error: 'OOMKilled', state: 'failed' });
    const [row] = await hub.after('p1', 0);
    expect(JSON.stringify(row?.event)).toBe('{"type":"state","state":"failed","error":"OOMKilled","at":7}');
  });
});
