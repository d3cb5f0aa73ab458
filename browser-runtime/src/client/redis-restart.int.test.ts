/**
 * Issue 14, "Node loss with real processes", Redis restarted: two router replicas as their own
 * processes on a private `redis-server` (no persistence: the restart loses every key, leases, sync
 * state, liveness and queues included), one real pool agent process. An editor types through replica
 * A while Redis stops and starts again; its edits resume, nothing is lost, the scheduled jobs run
 * again, and pub/sub works again after the restart: replica B's SSE stream is subscribed in the new Redis and hears a state change
 * made through replica A.
 */
import { randomBytes } from 'node:crypto';
import { startPrivateRedis, until } from '@preview/router/testkit/processes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, persisted, projectAsServed, startCluster, typingEditor } from '../../test/cluster.ts';
import type { PreviewStreamEvent } from './preview-events.ts';

describe('Redis restarted while an editor types through one replica and another streams its events', () => {
  let c: Cluster;
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  const prefix = `rr${randomBytes(3).toString('hex')}:`;
  beforeAll(async () => {
    redis = await startPrivateRedis();
    // Heartbeats every 3 s, reconcile every second: after the restart the reconcile job runs (more than
    // once) before the agent's next heartbeat has put its liveness key back.
    c = await startCluster({
      replicas: 2,
      redisUrl: redis.url,
      redisPrefix: prefix,
      env: { HEARTBEAT_MS: '3000', NODE_TTL_MS: '8000' },
    });
  }, 600_000);
  afterAll(async () => {
    await c?.close();
    await redis?.stop();
  }, 180_000);

  it('edits resume after the restart, nothing persisted is lost, and cross-replica pub/sub works again', {
    timeout: 900_000,
  }, async () => {
    const [a, b] = c.routers as [Cluster['routers'][number], Cluster['routers'][number]];
    const p = await c.createPreview();

    // Replica B streams the preview's events; the editor types through replica A.
    const seen: PreviewStreamEvent[] = [];
    const stop = new AbortController();
    const events = (async () => {
      for await (const e of c.client(`http://127.0.0.1:${b.port}`).events(p.id, {
        signal: stop.signal,
        backoff: { initialMs: 50, maxMs: 1000 },
      }))
        seen.push(e);
    })();
    await until(
      'the state ready over B’s SSE',
      async () => (seen.some((e) => e.type === 'state' && e.state === 'ready') ? true : undefined),
      300_000,
    );
    const sync = c.client(`http://127.0.0.1:${a.port}`).sync(p.id, {
      clientId: `editor-${randomBytes(4).toString('hex')}`,
      backoff: { initialMs: 50, maxMs: 1000 },
    });
    const rejected: string[] = [];
    sync.on('rejected', (e) => rejected.push(e.error.message));
    const editor = typingEditor(sync);
    for (let i = 0; i < 6; i++) editor.edit('before');
    await persisted(sync);

    // Redis goes away while the editor types, and comes back empty.
    editor.start('during');
    await until('edits in flight', async () => (editor.typed >= 9 ? true : undefined), 60_000);
    await redis.stop();
    const typedAtStop = editor.typed;
    await until(
      'edits while Redis is down',
      async () => (editor.typed >= typedAtStop + 10 ? true : undefined),
      60_000,
    );
    await redis.start();
    const typedAtStart = editor.typed;
    await until(
      'edits after the restart',
      async () => (editor.typed >= typedAtStart + 10 ? true : undefined),
      60_000,
    );
    await editor.stop();
    editor.edit('after');
    await persisted(sync);
    expect(rejected).toEqual([]);
    expect(sync.unacked).toBe(0);
    for (const r of c.routers) expect(r.child.exitCode, r.lines.slice(-20).join('\n')).toBeNull();

    // project_files and the sandbox hold the editor's state exactly.
    const notes = [...editor.state.keys()].filter((k) => k.startsWith('notes/')).sort();
    const { files, served } = await projectAsServed(c, p.id, b.port, notes);
    expect(files).toEqual(Object.fromEntries(editor.state));
    expect(served).toEqual(Object.fromEntries(notes.map((k) => [k, editor.state.get(k)])));

    // The scheduled jobs (reconcile every second here) run again: the restart lost their
    // schedulers with every other key, and the replicas put them back.
    await until(
      'a scheduled job run in the restarted Redis',
      async () =>
        Number(await redis.cli('zcard', `${prefix}bull:router-jobs:completed`)) >= 1 ? true : undefined,
      120_000,
    );

    // The node was never taken for dead: the preview stayed where it was (no `migrating`).
    expect(seen.filter((e) => e.type === 'state').map((e) => (e as { state: string }).state)).not.toContain(
      'migrating',
    );
    expect((await c.client().get(p.id)).placement).toEqual(p.placement);

    // Pub/sub again: B's stream is subscribed in the restarted Redis and hears a change made on A.
    const channel = `${prefix}ps:events:${p.id}`;
    await until(
      'B subscribed again in the new Redis',
      async () => {
        const out = (await redis.cli('pubsub', 'numsub', channel)).split('\n');
        return Number(out[1] ?? 0) >= 1 ? true : undefined;
      },
      120_000,
    );
    const before = seen.length;
    expect((await c.client(`http://127.0.0.1:${a.port}`).suspend(p.id)).state).toBe('suspended');
    await until(
      'suspended over B’s SSE',
      async () =>
        seen.slice(before).some((e) => e.type === 'state' && e.state === 'suspended') ? true : undefined,
      120_000,
    );
    stop.abort();
    await events;
    sync.close();
  });
});
