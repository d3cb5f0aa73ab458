import { randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../db/migrate.ts';
import { SessionStore } from './sessions.ts';

let db: TestDatabase;
let store: SessionStore;
beforeAll(async () => {
  db = await createTestDatabase();
  db.pool.on('error', () => {});
  await migrate(db.pool);
  store = new SessionStore(db.pool);
});
afterAll(async () => {
  await db?.drop();
});

describe('SessionStore events', () => {
  // The SSE stream's contract: having read event n of a preview, it has every earlier one. Event
  // ids come from one sequence; an append that took its id while a state change of the same preview
  // was being committed used to commit before it with a higher id (the events stream ended at
  // `ended` without the `status` written just before it: preview-events.int.test under load).
  it("a preview's events commit in id order: an append waits for a change of the preview in flight", async () => {
    const id = randomUUID();
    await db.pool.query(
      `INSERT INTO preview_sessions (id, user_id, template) VALUES ($1, $2, 'vite-react')`,
      [id, randomUUID()],
    );
    const other = await db.pool.connect();
    try {
      // A state change in flight: the preview's row updated, its event inserted, not committed.
      await other.query('BEGIN');
      await other.query(`UPDATE preview_sessions SET updated_at = now() WHERE id = $1`, [id]);
      const appended = store.appendEvent(id, 'status', { phase: 'ready' });
      // The append is either done (it did not wait) or waiting on the preview's lock.
      let settled = false;
      void appended.finally(() => {
        settled = true;
      });
      for (;;) {
        if (settled) break;
        const { rows } = await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO preview_events%'`,
        );
        if (rows[0]!.n > 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      await other.query(
        `INSERT INTO preview_events (preview_id, kind, data) VALUES ($1, 'state', '{"state":"ended"}')`,
        [id],
      );
      await other.query('COMMIT');
      await appended;
    } finally {
      other.release();
    }
    const events = await store.recentEvents(id);
    // Oldest first: the append, which committed last, has the higher id.
    expect(events.map((e) => e.kind)).toEqual(['state', 'status']);
  });

  it('an append for a preview that is gone writes nothing and does not throw', async () => {
    const id = randomUUID();
    await store.appendEvent(id, 'status', { phase: 'ready' });
    expect(await store.recentEvents(id)).toEqual([]);
  });
});
