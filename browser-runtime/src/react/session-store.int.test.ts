/**
 * PreviewSessionStore (the session behind `usePreviewSession`) in Node against a real router with
 * its sync hub (Postgres, the directory test sandbox): edits made before the socket opens, removal,
 * retain/release as StrictMode drives them, dispose, and bad input.
 */
import { ConfigError, InvalidInputError } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type RouterWithSync, startRouterWithSync } from '../../test/router-fixture.ts';
import { PreviewClient } from '../client/preview-client.ts';
import type { WebSocketConstructor } from '../client/transport.ts';
import { PreviewSessionStore } from './session-store.ts';

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

const files = { 'index.html': '<h1>hi</h1>', 'src/a.js': 'a' };
const until = async (what: string, fn: () => Promise<boolean> | boolean) => {
  for (let i = 0; i < 200; i++) {
    if (await fn()) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
};
const stateOf = async (id: string) =>
  (await r.db.pool.query('SELECT state FROM preview_sessions WHERE id = $1', [id])).rows[0]?.state;

describe('PreviewSessionStore (real router + sync hub)', () => {
  it('edits made before the socket opens are sent in order; remove deletes; release + retain (StrictMode) keeps the preview; dispose stops it', async () => {
    const store = new PreviewSessionStore({ files, client, runtimes: { webcontainer: true } });
    const seen: string[] = [];
    store.subscribe(() => seen.push(store.getSnapshot().state));
    store.retain();
    // StrictMode: unmount + mount in the same commit.
    store.release();
    store.retain();
    store.write('src/a.js', 'a2');
    store.write('src/b.js', 'b');
    store.remove('src/a.js');
    expect(store.getSnapshot().files).toEqual({ 'index.html': '<h1>hi</h1>', 'src/b.js': 'b' });
    await until('the preview', () => !!store.getSnapshot().previewId);
    const id = store.getSnapshot().previewId!;
    expect(seen).toContain('creating');
    await until('the edits persisted', async () => {
      const f = await r.dbFiles(id);
      return f['src/b.js'] === 'b' && !('src/a.js' in f);
    });
    expect(await r.dbFiles(id)).toEqual({ 'index.html': '<h1>hi</h1>', 'src/b.js': 'b' });
    // The release above was cancelled by the retain: one preview, still live.
    const mine = await r.db.pool.query('SELECT id FROM preview_sessions WHERE user_id = $1', [r.userId]);
    expect(mine.rows.map((x) => x.id)).toContain(id);
    expect(await stateOf(id)).not.toMatch(/ended|stopping/);

    store.write('late.txt', 'written just before unmount');
    store.release();
    await until('the release to stop it', async () => (await stateOf(id)) === 'ended');
    // What was typed before the unmount was persisted first.
    expect((await r.dbFiles(id))['late.txt']).toBe('written just before unmount');
    expect(store.dispose()).toBe(store.dispose());
    store.write('after.txt', 'ignored');
    expect(store.getSnapshot().files).not.toHaveProperty('after.txt');
  });

  it('stopOnUnmount: false leaves the project preview running; a remount with the projectId finds it', async () => {
    const a = new PreviewSessionStore({
      files,
      client,
      projectId: 'store-app',
      stopOnUnmount: false,
      runtimes: { webcontainer: true },
    });
    a.retain();
    await until('the preview', () => !!a.getSnapshot().previewId);
    await a.dispose();
    const id = a.getSnapshot().previewId!;
    expect(await stateOf(id)).not.toMatch(/ended|stopping/);
    const b = new PreviewSessionStore({
      files,
      client,
      projectId: 'store-app',
      runtimes: { webcontainer: true },
    });
    b.retain();
    await until('the preview', () => !!b.getSnapshot().previewId);
    expect(b.getSnapshot().previewId).toBe(id);
    await b.dispose();
    expect(await stateOf(id)).toBe('ended');
  });

  it('bad input: a bad path names the field and the rule and keeps nothing; no client is a ConfigError; a refused create is the error', async () => {
    const store = new PreviewSessionStore({ files, client, runtimes: { webcontainer: true } });
    expect(() => store.write('../escape', 'x')).toThrow(InvalidInputError);
    expect(() => store.write('../escape', 'x')).toThrow(/path: .*rule/);
    expect(store.getSnapshot().files).not.toHaveProperty('../escape');
    expect(() => new PreviewSessionStore({ files } as never)).toThrow(ConfigError);
    expect(() => new PreviewSessionStore({ client } as never)).toThrow(/files/);

    const refused = new PreviewSessionStore({
      files: { '../x': 'y' },
      client,
      runtimes: { webcontainer: true },
    });
    refused.retain();
    await until('the refusal', () => refused.getSnapshot().state === 'failed');
    const err = refused.getSnapshot().error;
    expect(err).toMatchObject({ source: 'preview', code: 'invalid_request' });
    expect(err?.message).toMatch(/files/);
    await refused.dispose();
  });
});

// A router of its own: after the other tests' sessions on the shared router, the socket carrying the
// rename was seen closing and not reopening (not understood yet; see the editor branch's report).
describe('PreviewSessionStore rename, syncState and stop (a fresh router + sync hub)', () => {
  let r2: RouterWithSync;
  let own: PreviewClient;
  beforeAll(async () => {
    r2 = await startRouterWithSync();
    own = new PreviewClient({
      baseUrl: r2.baseUrl,
      token: r2.jwt,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
  });
  afterAll(async () => {
    await r2?.close();
  });

  it('rename sends a rename op (the router moves the file); syncState follows the socket; stop ends the preview at once', async () => {
    const store = new PreviewSessionStore({ files, client: own, runtimes: { webcontainer: true } });
    expect(store.getSnapshot().syncState).toBe('idle');
    await expect(store.stop()).rejects.toThrow(/stop: there is no preview yet/);
    store.retain();
    await until('the preview', () => !!store.getSnapshot().previewId);
    const id = store.getSnapshot().previewId!;
    await until('the socket open', () => store.getSnapshot().syncState === 'open');
    await until('the files stored', async () => 'src/a.js' in (await r2.dbFiles(id)));
    store.rename('src/a.js', 'src/moved/a.js');
    expect(store.getSnapshot().files).toEqual({ 'index.html': '<h1>hi</h1>', 'src/moved/a.js': 'a' });
    await until('the rename persisted', async () => 'src/moved/a.js' in (await r2.dbFiles(id)));
    expect(await r2.dbFiles(id)).toEqual({ 'index.html': '<h1>hi</h1>', 'src/moved/a.js': 'a' });
    // Bad renames: nothing sent, nothing changed.
    expect(() => store.rename('nope.js', 'x.js')).toThrow(/from: no file "nope.js"/);
    expect(() => store.rename('index.html', 'src/moved/a.js')).toThrow(
      /to: "src\/moved\/a.js" is already a file/,
    );
    expect(() => store.rename('index.html', '../x')).toThrow(/path: .*rule/);
    expect(store.getSnapshot().files).toEqual({ 'index.html': '<h1>hi</h1>', 'src/moved/a.js': 'a' });
    await store.stop();
    expect(store.getSnapshot().state).toBe('ended');
    expect(
      (await r2.db.pool.query('SELECT state FROM preview_sessions WHERE id = $1', [id])).rows[0]?.state,
    ).toMatch(/ended|stopping/);
    await store.dispose();
  });
});
