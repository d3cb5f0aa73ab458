import { NotFoundError } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RouterWithSync, startRouterWithSync } from '../../test/router-fixture.ts';
import { PreviewClient } from './preview-client.ts';
import type { PreviewStreamEvent } from './preview-events.ts';

let r: RouterWithSync;
beforeAll(async () => {
  r = await startRouterWithSync();
});
afterAll(async () => {
  await r?.close();
});

const files = { 'index.html': '<h1>hi</h1>', 'package.json': '{"name":"x"}' };
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
async function until(what: string, ok: () => boolean, ms = 30_000) {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('PreviewClient.events() against a real router', () => {
  it('follows state events, reconnects after a lost connection with Last-Event-ID (nothing missed or repeated), ends at ended', {
    timeout: 60_000,
  }, async () => {
    // A fetch that remembers each request's Last-Event-ID and lets the test cut a response mid-stream.
    const asked: Array<string | null> = [];
    const cuts: Array<() => void> = [];
    const fetchCuttable: typeof fetch = async (input, init) => {
      if (!String(input).endsWith('/events')) return fetch(input, init);
      asked.push(new Headers(init?.headers).get('last-event-id'));
      const res = await fetch(input, init);
      if (!res.body) return res;
      let ctl: TransformStreamDefaultController<Uint8Array> | undefined;
      const body = res.body.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          start(c) {
            ctl = c;
          },
        }),
      );
      cuts.push(() => ctl?.error(new Error('connection lost')));
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const client = new PreviewClient({ baseUrl: r.baseUrl, token: r.jwt, fetch: fetchCuttable });
    const p = await client.create({ files, client: { webcontainer: true } });
    const seen: PreviewStreamEvent[] = [];
    const reconnects: string[] = [];
    const loop = (async () => {
      for await (const e of client.events(p.id, {
        backoff: { initialMs: 10, maxMs: 50 },
        onReconnect: (x) => reconnects.push(x.reason),
      }))
        seen.push(e);
    })();

    // The snapshot (no id), then the stored `ready` of the placement (with its id).
    await until('the stored ready event', () =>
      seen.some((e) => e.id && e.type === 'state' && e.state === 'ready'),
    );
    expect(seen[0]).toMatchObject({ type: 'state', state: 'ready' });
    expect(seen[0]?.id).toBeUndefined();
    const lastBeforeCut = seen.filter((e) => e.id).at(-1)!.id!;

    // The connection is lost; the preview is suspended meanwhile (or just after the reconnect).
    cuts[0]!();
    await client.suspend(p.id);
    await until('suspended after the reconnect', () =>
      seen.some((e) => e.type === 'state' && e.state === 'suspended'),
    );
    expect(reconnects.length).toBeGreaterThanOrEqual(1);
    expect(asked[0]).toBeNull();
    expect(asked[1]).toBe(lastBeforeCut);
    await client.resume(p.id);
    await client.stop(p.id);
    await loop;

    // Every stored event once, in order, and the stream ended after `ended`.
    const stored = await r.db.pool.query<{ id: string }>(
      'SELECT id::text FROM preview_events WHERE preview_id = $1 ORDER BY id',
      [p.id],
    );
    expect(seen.filter((e) => e.id).map((e) => e.id)).toEqual(stored.rows.map((x) => x.id));
    const states = seen.filter((e) => e.id && e.type === 'state').map((e) => (e as { state: string }).state);
    expect(states).toContain('suspended');
    expect(states.at(-1)).toBe('ended');
    expect(seen.at(-1)).toMatchObject({ type: 'state', state: 'ended' });
  });

  it('a stream opened with lastEventId gets only the events after it; an ended preview’s stream ends', async () => {
    const client = new PreviewClient({ baseUrl: r.baseUrl, token: r.jwt });
    const p = await client.create({ files, client: { webcontainer: true } });
    await client.suspend(p.id);
    await client.stop(p.id);
    const all: PreviewStreamEvent[] = [];
    for await (const e of client.events(p.id)) all.push(e);
    const stored = all.filter((e) => e.id);
    expect(stored.length).toBeGreaterThanOrEqual(3);
    const after: PreviewStreamEvent[] = [];
    for await (const e of client.events(p.id, { lastEventId: stored[0]!.id! })) after.push(e);
    expect(after.filter((e) => e.id)).toEqual(stored.slice(1));
  });

  it('another user’s preview: NotFoundError; a bad Last-Event-ID: 400 naming the header', async () => {
    const client = new PreviewClient({ baseUrl: r.baseUrl, token: r.jwt });
    const p = await client.create({ files, client: { webcontainer: true } });
    const stranger = new PreviewClient({ baseUrl: r.baseUrl, token: r.otherJwt });
    await expect(
      (async () => {
        for await (const _ of stranger.events(p.id)) break;
      })(),
    ).rejects.toBeInstanceOf(NotFoundError);
    const bad = await fetch(`${r.baseUrl}/v1/previews/${p.id}/events`, {
      headers: { authorization: `Bearer ${r.jwt}`, 'last-event-id': 'abc' },
    });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain('last-event-id');
    await client.stop(p.id);
  });
});
