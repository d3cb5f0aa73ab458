import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createIsolatedDb, createQuietTestDatabase, type IsolatedDb } from '../test/test-db.ts';

const HOUR = 3_600_000;
let t: IsolatedDb;
beforeEach(async () => {
  t = await createIsolatedDb();
});
afterEach(async () => {
  await t?.close();
});

async function exists(schema: string, role: string): Promise<{ schema: boolean; role: boolean }> {
  const r = await t.db.pool.query<{ schema: boolean; role: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2) AS role`,
    [schema, role],
  );
  return r.rows[0]!;
}

const ago = (ms: number) => new Date(Date.now() - ms);

describe('schema janitor', () => {
  it('drops ended, sessionless and orphan schemas after the grace period, and nothing else', async () => {
    const make = async () => {
      const id = randomUUID();
      const p = await t.iso.create(id);
      await t.withClient(p.databaseUrl, (c) =>
        c.query('CREATE TABLE data (v int); INSERT INTO data VALUES (1)'),
      );
      return p;
    };
    const live = await make(); // session ready
    await t.addSession(live.previewId, 'ready');
    const ended = await make(); // ended two hours ago
    await t.addSession(ended.previewId, 'ended', ago(2 * HOUR));
    const failed = await make(); // failed two hours ago
    await t.addSession(failed.previewId, 'failed', ago(2 * HOUR));
    const recent = await make(); // ended a minute ago: within the grace period
    await t.addSession(recent.previewId, 'ended', ago(60_000));
    const sessionless = await make(); // registry row older than the cutoff, no session row
    await t.db.pool.query(
      `UPDATE preview_schemas SET created_at = now() - interval '2 hours' WHERE preview_id = $1`,
      [sessionless.previewId],
    );
    const young = await make(); // no session row yet, but just created (placement in progress)
    const orphan = await make(); // schema with no registry row
    await t.db.pool.query('DELETE FROM preview_schemas WHERE preview_id = $1', [orphan.previewId]);
    const liveOrphan = await make(); // no registry row, but the router says its session is live
    await t.db.pool.query('DELETE FROM preview_schemas WHERE preview_id = $1', [liveOrphan.previewId]);
    const endedButLive = await make(); // the database says ended, the router's liveness says otherwise
    await t.addSession(endedButLive.previewId, 'ended', ago(2 * HOUR));
    // Things that are not preview schemas at all.
    await t.db.pool.query(
      'CREATE SCHEMA app_data; CREATE TABLE app_data.t (x int); CREATE SCHEMA preview_notes',
    );

    const stale = await t.iso.listStale({ cutoff: ago(HOUR) });
    expect(new Map(stale.map((s) => [s.previewId, s.reason]))).toEqual(
      new Map([
        [ended.previewId, 'ended'],
        [failed.previewId, 'ended'],
        [sessionless.previewId, 'no_session'],
        [orphan.previewId, 'orphan'],
        [liveOrphan.previewId, 'orphan'],
        [endedButLive.previewId, 'ended'],
      ]),
    );

    const asked: string[][] = [];
    const result = await t.iso.runJanitor({
      graceMs: HOUR,
      isLive: async (ids) => {
        asked.push(ids);
        return new Set(
          [live.previewId, liveOrphan.previewId, endedButLive.previewId].filter((id) => ids.includes(id)),
        );
      },
    });
    expect(asked).toHaveLength(1);
    const dropped = [ended, failed, sessionless, orphan];
    expect(result.dropped.map((d) => d.previewId).sort()).toEqual(dropped.map((d) => d.previewId).sort());
    expect(result.failed).toEqual([]);
    expect(result.skipped.map((s) => s.previewId).sort()).toEqual(
      [liveOrphan.previewId, endedButLive.previewId].sort(),
    );
    for (const p of dropped) expect(await exists(p.schema, p.role)).toEqual({ schema: false, role: false });
    for (const p of [live, recent, young, liveOrphan, endedButLive]) {
      expect(await exists(p.schema, p.role)).toEqual({ schema: true, role: true });
      const r = await t.db.pool.query(`SELECT v FROM ${p.schema}.data`);
      expect(r.rows).toEqual([{ v: 1 }]);
    }
    const other = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname IN ('app_data', 'preview_notes', 'public')`,
    );
    expect(other.rows[0].n).toBe(3);
    const states = await t.db.pool.query<{ preview_id: string; state: string }>(
      'SELECT preview_id::text, state FROM preview_schemas WHERE preview_id = ANY($1)',
      [[ended.previewId, failed.previewId, sessionless.previewId, live.previewId]],
    );
    expect(Object.fromEntries(states.rows.map((r) => [r.preview_id, r.state]))).toEqual({
      [ended.previewId]: 'dropped',
      [failed.previewId]: 'dropped',
      [sessionless.previewId]: 'dropped',
      [live.previewId]: 'active',
    });

    // A second run finds nothing new to do.
    const again = await t.iso.runJanitor({ graceMs: HOUR, isLive: async () => new Set() });
    expect(again.dropped.map((d) => d.previewId).sort()).toEqual(
      [liveOrphan.previewId, endedButLive.previewId].sort(),
    );
    expect((await t.iso.runJanitor({ graceMs: HOUR, isLive: async () => new Set() })).dropped).toEqual([]);
  });

  it('is safe to run twice at once: each schema is dropped exactly once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      const p = await t.iso.create(randomUUID());
      await t.addSession(p.previewId, 'ended', ago(2 * HOUR));
      ids.push(p.previewId);
    }
    const keep = await t.iso.create(randomUUID());
    await t.addSession(keep.previewId, 'ready');
    const none = async () => new Set<string>();
    const [a, b] = await Promise.all([
      t.iso.runJanitor({ graceMs: HOUR, isLive: none }),
      t.iso.runJanitor({ graceMs: HOUR, isLive: none }),
    ]);
    expect([...a.failed, ...b.failed]).toEqual([]);
    const droppedA = a.dropped.map((d) => d.previewId);
    const droppedB = b.dropped.map((d) => d.previewId);
    expect(droppedA.filter((id) => droppedB.includes(id))).toEqual([]);
    expect([...droppedA, ...droppedB].sort()).toEqual([...ids].sort());
    // Whatever one run skipped, the other dropped.
    for (const s of [...a.skipped, ...b.skipped]) expect(['busy', 'no_longer_stale']).toContain(s.reason);
    const left = await t.db.pool.query(
      `SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname ~ '^preview_[0-9a-f]{32}$') AS schemas,
              (SELECT count(*)::int FROM preview_schemas WHERE state = 'active') AS active`,
    );
    expect(left.rows[0]).toEqual({ schemas: 1, active: 1 });
    expect(await exists(keep.schema, keep.role)).toEqual({ schema: true, role: true });
  });

  it('does not wait for a preview whose drop is in progress elsewhere', async () => {
    const p = await t.iso.create(randomUUID());
    await t.addSession(p.previewId, 'ended', ago(2 * HOUR));
    // Hold the preview's lock as a concurrent drop would.
    const holder = await t.db.pool.connect();
    try {
      await holder.query(`SELECT pg_advisory_lock(${0x70726576}, hashtext($1))`, [
        p.previewId.replaceAll('-', ''),
      ]);
      const r = await t.iso.runJanitor({ graceMs: HOUR, isLive: async () => new Set() });
      expect(r.skipped).toEqual([{ previewId: p.previewId, reason: 'busy' }]);
      expect(r.dropped).toEqual([]);
    } finally {
      await holder.query('SELECT pg_advisory_unlock_all()');
      holder.release();
    }
    const r = await t.iso.runJanitor({ graceMs: HOUR, isLive: async () => new Set() });
    expect(r.dropped.map((d) => d.previewId)).toEqual([p.previewId]);
  });

  it('reports a preview it cannot drop and still drops the others', async () => {
    const stuck = await t.iso.create(randomUUID());
    const fine = await t.iso.create(randomUUID());
    for (const p of [stuck, fine]) await t.addSession(p.previewId, 'ended', ago(2 * HOUR));
    // The stuck preview's role owns a table in another database of the cluster: DROP ROLE must fail.
    const elsewhere = await createQuietTestDatabase();
    try {
      await elsewhere.pool.query(`GRANT CREATE ON SCHEMA public TO ${stuck.role}`);
      const url = new URL(stuck.databaseUrl);
      url.pathname = `/${elsewhere.name}`;
      const c = new pg.Client({ connectionString: url.toString() });
      await c.connect();
      await c.query('CREATE TABLE public.kept_elsewhere (x int)');
      await c.end();

      const r = await t.iso.runJanitor({ graceMs: HOUR, isLive: async () => new Set() });
      expect(r.dropped.map((d) => d.previewId)).toEqual([fine.previewId]);
      expect(r.failed).toEqual([{ previewId: stuck.previewId, error: expect.stringContaining(stuck.role) }]);
      // Its schema is gone; its role and a 'dropping' row remain, so the next run retries it.
      expect(await exists(stuck.schema, stuck.role)).toEqual({ schema: false, role: true });
      const stale = await t.iso.listStale({ cutoff: ago(HOUR) });
      expect(stale).toEqual([expect.objectContaining({ previewId: stuck.previewId, reason: 'incomplete' })]);

      await elsewhere.pool.query(`DROP OWNED BY ${stuck.role}`);
      const again = await t.iso.runJanitor({ graceMs: HOUR, isLive: async () => new Set() });
      expect(again.dropped.map((d) => d.previewId)).toEqual([stuck.previewId]);
      expect(await exists(stuck.schema, stuck.role)).toEqual({ schema: false, role: false });
    } finally {
      await elsewhere.pool.query(`DROP OWNED BY ${stuck.role}`).catch(() => {});
      await elsewhere.drop();
    }
  });

  it('drops seed login roles left past VALID UNTIL by a router that died mid-seed; their objects go to the preview role', async () => {
    const id = randomUUID();
    await t.iso.create(id);
    const hex = id.replaceAll('-', '');
    const expired = `ps_${hex}_deadbeef`;
    const current = `ps_${hex}_0badcafe`;
    await t.db.pool.query(
      `CREATE ROLE ${expired} LOGIN VALID UNTIL '2000-01-01T00:00:00Z' IN ROLE p_${hex};
       CREATE ROLE ${current} LOGIN VALID UNTIL '${new Date(Date.now() + HOUR).toISOString()}' IN ROLE p_${hex};
       CREATE TABLE preview_${hex}.half_seeded (id int);
       ALTER TABLE preview_${hex}.half_seeded OWNER TO ${expired}`,
    );
    try {
      const r = await t.iso.runJanitor({ graceMs: HOUR, isLive: async (ids) => new Set(ids) });
      expect(r.droppedSeedRoles).toContain(expired);
      expect(r.droppedSeedRoles).not.toContain(current);
      const roles = await t.db.pool.query<{ rolname: string }>(
        'SELECT rolname FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1',
        [[expired, current]],
      );
      expect(roles.rows.map((x) => x.rolname)).toEqual([current]);
      const owner = await t.db.pool.query<{ owner: string }>(
        `SELECT tableowner AS owner FROM pg_tables WHERE schemaname = $1 AND tablename = 'half_seeded'`,
        [`preview_${hex}`],
      );
      expect(owner.rows[0]?.owner).toBe(`p_${hex}`);
    } finally {
      await t.db.pool.query(`DROP ROLE IF EXISTS ${current}`);
    }
  });

  it('rejects bad janitor and listStale arguments', async () => {
    await expect(t.iso.runJanitor({ graceMs: -1, isLive: async () => new Set() })).rejects.toMatchObject({
      name: 'ConfigError',
      message: expect.stringContaining('graceMs'),
    });
    await expect(t.iso.listStale({ cutoff: new Date('nope') })).rejects.toMatchObject({
      name: 'InvalidInputError',
      message: expect.stringContaining('cutoff'),
    });
  });
});
