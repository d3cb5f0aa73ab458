import { ConflictError, InvalidInputError, NotFoundError, UnauthorizedError } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type RouterWithSync, startRouterWithSync } from '../../test/router-fixture.ts';
import { SyncClosedError } from './errors.ts';
import { PreviewClient } from './preview-client.ts';
import type { WebSocketConstructor } from './transport.ts';

let r: RouterWithSync;
let client: PreviewClient;
beforeAll(async () => {
  r = await startRouterWithSync();
  client = new PreviewClient({
    baseUrl: r.baseUrl,
    token: r.jwt,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
  });
});
afterAll(async () => {
  await r?.close();
});

const files = { 'index.html': '<h1>hi</h1>', 'package.json': '{"name":"x"}' };

describe('PreviewClient REST (real router)', () => {
  it('creates, gets and stops a preview', async () => {
    const p = await client.create({ files, client: { webcontainer: true } });
    expect(p.id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await client.get(p.id)).id).toBe(p.id);
    await client.stop(p.id);
    await client.stop(p.id);
  });

  it('resume() wakes a suspended preview; suspend() and resume() are the owner’s only', async () => {
    const p = await client.create({ files, client: { webcontainer: true } });
    expect((await client.suspend(p.id)).state).toBe('suspended');
    const woken = await client.resume(p.id);
    expect(woken.id).toBe(p.id);
    expect(woken.state).not.toBe('suspended');
    expect((await client.get(p.id)).state).not.toBe('suspended');
    const stranger = new PreviewClient({ baseUrl: r.baseUrl, token: r.otherJwt });
    await expect(stranger.resume(p.id)).rejects.toBeInstanceOf(NotFoundError);
    await client.stop(p.id);
    // An ended preview cannot be resumed: 409 preview_ended, as an edit to it is answered.
    const late = await client.resume(p.id).catch((e: unknown) => e);
    expect(late).toBeInstanceOf(ConflictError);
    expect(late).toMatchObject({ code: 'preview_ended' });
  });

  it('projectId: one live preview per project, found by projectPreview()', async () => {
    const a = await client.create({ files, client: { webcontainer: true }, projectId: 'client-app' });
    const b = await client.create({ files, client: { webcontainer: true }, projectId: 'client-app' });
    expect(b.id).toBe(a.id);
    expect(a.projectId).toBe('client-app');
    expect((await client.projectPreview('client-app')).id).toBe(a.id);
    await client.stop(a.id);
    await expect(client.projectPreview('client-app')).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.projectPreview('bad id')).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('maps router errors to typed errors', async () => {
    await expect(client.get('00000000-0000-4000-8000-000000000000')).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.create({ files: { '../x': 'y' } })).rejects.toBeInstanceOf(InvalidInputError);
    const bad = new PreviewClient({ baseUrl: r.baseUrl, token: 'nope' });
    await expect(bad.get('00000000-0000-4000-8000-000000000000')).rejects.toBeInstanceOf(UnauthorizedError);
    expect(() => new PreviewClient({ baseUrl: 'not a url', token: 't' })).toThrow(/baseUrl/);
  });
});

describe('PreviewClient sync (real router + hub + Postgres + directory test sandbox)', () => {
  it('coalesces writes to one path, keeps rename/delete order, and reports applied and persisted', async () => {
    const p = await client.create({ files, client: { webcontainer: true } });
    const sync = client.sync(p.id);
    const applied: number[] = [];
    sync.on('applied', (e) => applied.push(e.seq));
    sync.write('src/a.ts', 'v1');
    sync.write('src/a.ts', 'v2');
    sync.write('src/a.ts', 'v3');
    sync.write('b.ts', 'b');
    await sync.whenPersisted();
    expect(applied).toEqual([1]);
    sync.rename('src/a.ts', 'src/renamed.ts');
    sync.write('src/a.ts', 'again');
    sync.delete('b.ts');
    await sync.whenPersisted();
    const expected = { ...files, 'src/a.ts': 'again', 'src/renamed.ts': 'v3' };
    expect(await r.dbFiles(p.id)).toEqual(expected);
    expect(await r.sandboxFiles()).toMatchObject({ 'src/a.ts': 'again', 'src/renamed.ts': 'v3' });
    expect(await r.sandboxFiles()).not.toHaveProperty('b.ts');
    expect(() => sync.write('../escape', 'x')).toThrow(InvalidInputError);
    sync.close();
  });

  it('reconnects after the router drops the socket and replays what was not persisted', async () => {
    const p = await client.create({ files, client: { webcontainer: true } });
    const sync = client.sync(p.id, { backoff: { initialMs: 20, maxMs: 200 } });
    const states: string[] = [];
    sync.on('state', (e) => states.push(e.state));
    const expected: Record<string, string> = { ...files };
    let dropped = false;
    sync.on('applied', () => {
      if (!dropped) {
        dropped = true;
        r.dropSockets();
      }
    });
    for (let i = 0; i < 200; i++) {
      const path = `f/${i % 37}.ts`;
      expected[path] = `v${i}`;
      sync.write(path, `v${i}`);
      if (i % 10 === 9) await new Promise((res) => setTimeout(res, 2));
    }
    await sync.whenPersisted();
    expect(states.filter((s) => s === 'open').length).toBeGreaterThanOrEqual(2);
    expect(await r.dbFiles(p.id)).toEqual(expected);
    sync.close();
  });

  it('stops reconnecting when the preview belongs to someone else (close code 4404)', async () => {
    const p = await client.create({ files, client: { webcontainer: true } });
    const other = new PreviewClient({
      baseUrl: r.baseUrl,
      token: r.otherJwt,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const sync = other.sync(p.id);
    const err = await new Promise<unknown>((resolve) =>
      sync.on('error', (e) => e.error instanceof SyncClosedError && resolve(e.error)),
    );
    expect(err).toBeInstanceOf(SyncClosedError);
    expect((err as SyncClosedError).closeCode).toBe(4404);
    expect(sync.state).toBe('closed');
  });
});
