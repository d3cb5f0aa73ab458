/**
 * Issue 14, "Node loss with real processes", a router replica killed: two router replicas run as
 * their own processes (`router/src/main.ts`) on the test's Postgres and Redis behind a loopback load
 * balancer, with one real pool agent process. The editor's PreviewClient (sync session and SSE
 * events, both through the balancer) lands on replica A and keeps typing; A gets SIGKILL (no
 * shutdown: its sockets reset, its jobs and its sync ownership stop mid-flight). The editor reconnects
 * through the balancer to replica B, replays what was not persisted, and its later edits are applied;
 * every edit ends up in `project_files` and on the sandbox.
 */
import { randomBytes } from 'node:crypto';
import { until } from '@preview/router/testkit/processes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, persisted, projectAsServed, startCluster, typingEditor } from '../../test/cluster.ts';
import type { PreviewStreamEvent } from './preview-events.ts';
import type { SyncState } from './sync-session.ts';

describe('a router replica killed (SIGKILL) while an editor connected to it types', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ replicas: 2 });
  }, 600_000);
  afterAll(async () => {
    await c?.close();
  }, 180_000);

  it('the editor fails over to the other replica: nothing persisted is lost, later edits are applied', {
    timeout: 900_000,
  }, async () => {
    const [a, b] = c.routers as [Cluster['routers'][number], Cluster['routers'][number]];
    const p = await c.createPreview();
    const client = c.client();

    // The editor learns of `ready` from the preview's events.
    const seen: PreviewStreamEvent[] = [];
    const reconnects: string[] = [];
    const stop = new AbortController();
    const events = (async () => {
      for await (const e of client.events(p.id, {
        signal: stop.signal,
        backoff: { initialMs: 50, maxMs: 1000 },
        onReconnect: (x) => reconnects.push(x.reason),
      }))
        seen.push(e);
    })();
    await until(
      'the state ready over SSE',
      async () => (seen.some((e) => e.type === 'state' && e.state === 'ready') ? true : undefined),
      300_000,
    );

    const sync = client.sync(p.id, {
      clientId: `editor-${randomBytes(4).toString('hex')}`,
      backoff: { initialMs: 50, maxMs: 1000 },
    });
    const states: SyncState[] = [];
    sync.on('state', (e) => states.push(e.state));
    const rejected: string[] = [];
    sync.on('rejected', (e) => rejected.push(e.error.message));
    const editor = typingEditor(sync);
    for (let i = 0; i < 6; i++) editor.edit('before');
    await persisted(sync);
    // Everything so far went through replica A (the balancer's first choice).
    expect(c.lb.served.get(a.port) ?? 0).toBeGreaterThanOrEqual(3);
    expect(c.lb.served.get(b.port) ?? 0).toBe(0);
    const opensBefore = states.filter((s) => s === 'open').length;

    // The editor keeps typing; replica A dies mid-stream.
    editor.start('during');
    await until('edits in flight', async () => (editor.typed >= 9 ? true : undefined), 60_000);
    await a.kill9();
    const typedAtKill = editor.typed;

    // The sync session and the event stream reconnect, through the balancer, to replica B.
    await until(
      'the sync session open again',
      async () => (states.filter((s) => s === 'open').length > opensBefore ? true : undefined),
      120_000,
    );
    await until('the events stream back', async () => (reconnects.length > 0 ? true : undefined), 120_000);
    await until(
      'edits after the kill',
      async () => (editor.typed >= typedAtKill + 5 ? true : undefined),
      60_000,
    );
    await editor.stop();
    editor.edit('after');
    await persisted(sync);
    expect(c.lb.served.get(b.port) ?? 0).toBeGreaterThanOrEqual(2);
    expect(rejected).toEqual([]);
    expect(sync.unacked).toBe(0);

    // B's event stream opened with a snapshot: the preview is still ready (nothing moved).
    const snapshots = seen.filter((e) => e.type === 'state' && e.id === undefined);
    expect(snapshots.length).toBeGreaterThanOrEqual(2);
    expect(snapshots.at(-1)).toMatchObject({ state: 'ready' });

    // project_files and the sandbox (through B's preview proxy) hold the editor's state exactly.
    const notes = [...editor.state.keys()].filter((k) => k.startsWith('notes/')).sort();
    const { files, served } = await projectAsServed(c, p.id, b.port, notes);
    expect(files).toEqual(Object.fromEntries(editor.state));
    expect(served).toEqual(Object.fromEntries(notes.map((k) => [k, editor.state.get(k)])));

    stop.abort();
    await events;
    sync.close();
  });
});
