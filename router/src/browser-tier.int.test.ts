import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createBrowserTier } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { connectRawEditor } from '../test/sync/index.ts';
import type { PreviewRouter } from './router.ts';

/**
 * Issue 13, "edits persist honestly" and "placements stored": a browser preview has no sandbox, so
 * the hub persists its edits (ack `persisted` after COMMIT) and never acks `applied` (that is the
 * editor runtime's to say); its placement lives in `preview_sessions`, so a router that did not
 * create it (a restart, another replica) lists, suspends and destroys it.
 */
let h: Harness;
let server: Server;
let port: number;

beforeAll(async () => {
  h = await createHarness({
    tiers: ({ browserPlacements }) => ({ browser: createBrowserTier({ placements: browserPlacements }) }),
  });
  server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as Server;
  await new Promise((r) => server.once('listening', r));
  h.router.attach(server);
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await h?.close();
});

const FILES = {
  'index.html': '<!doctype html><div id="app"></div><script type="module" src="/src/main.ts"></script>',
  'src/main.ts': 'document.querySelector("#app")!.textContent = "hi";',
  'package.json': JSON.stringify({ name: 'v', devDependencies: { vite: '^8' } }),
};

async function createBrowserPreview(router: PreviewRouter = h.router): Promise<string> {
  const res = await router.app.request('/v1/previews', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
    body: JSON.stringify({ files: FILES, client: { bundler: true } }),
  });
  const body = (await res.json()) as { id: string; tier: string; placement: { runtime: string } };
  expect(res.status, JSON.stringify(body)).toBe(201);
  expect(body.tier, JSON.stringify(body)).toBe('browser');
  expect(body.placement.runtime).toBe('bundler');
  return body.id;
}

async function stored(id: string): Promise<Record<string, string>> {
  const files = await h.router.store.loadFiles(id);
  return Object.fromEntries(
    Object.entries(files).map(([p, f]) => [p, typeof f === 'string' ? f : f.content]),
  );
}

describe('browser tier: edits persist through the hub with no sandbox', () => {
  it('acks persisted after COMMIT to project_files and never acks applied', async () => {
    const id = await createBrowserPreview();
    const url = `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`;
    const editor = await connectRawEditor(url, { clientId: 'editor-1' });
    try {
      editor.send({
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'src/main.ts', content: 'export const v = 1;' }],
      });
      editor.send({
        type: 'batch',
        seq: 2,
        ops: [
          { op: 'rename', from: 'src/main.ts', to: 'src/app.ts' },
          { op: 'put', path: 'src/new.ts', content: 'new' },
        ],
      });
      await editor.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq >= 2));
      const files = await stored(id);
      expect(files['src/app.ts']).toBe('export const v = 1;');
      expect(files['src/new.ts']).toBe('new');
      expect(files['src/main.ts']).toBeUndefined();
      expect(editor.frames.filter((f) => f.type === 'ack' && f.stage === 'applied')).toEqual([]);
      // A refused batch writes nothing and still holds its place.
      editor.send({ type: 'batch', seq: 3, ops: [{ op: 'put', path: '../escape', content: 'x' }] });
      editor.send({ type: 'batch', seq: 4, ops: [{ op: 'put', path: 'src/four.ts', content: '4' }] });
      await editor.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq >= 4));
      expect(editor.frames.some((f) => f.type === 'error' && f.seq === 3)).toBe(true);
      expect(Object.keys(await stored(id))).not.toContain('../escape');
      expect((await stored(id))['src/four.ts']).toBe('4');
    } finally {
      editor.ws.close();
    }
  });

  it('a replayed batch after reconnect is acked as persisted once, not written twice', async () => {
    const id = await createBrowserPreview();
    const url = `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`;
    const a = await connectRawEditor(url, { clientId: 'editor-r' });
    a.send({ type: 'batch', seq: 1, ops: [{ op: 'rename', from: 'index.html', to: 'page.html' }] });
    await a.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 1));
    a.ws.close();
    await h.router.app.request(`/v1/previews/${id}/files`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'index.html', content: 'again' }],
      }),
    });
    const b = await connectRawEditor(url, { clientId: 'editor-r', lastAckedSeq: 0 });
    try {
      b.send({ type: 'batch', seq: 1, ops: [{ op: 'rename', from: 'index.html', to: 'page.html' }] });
      await b.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 1));
      const files = await stored(id);
      expect(files['index.html']).toBe('again');
      expect(files['page.html']).toBe(FILES['index.html']);
    } finally {
      b.ws.close();
    }
  });
});

describe('browser tier: placements stored in Postgres', () => {
  it('another router (a restart, a replica) lists, suspends, resumes and destroys a browser preview', async () => {
    const id = await createBrowserPreview();
    const other = await h.replica();
    const list = await other.app.request('/v1/previews', { headers: bearer(h.alice.jwt) });
    expect(JSON.stringify(await list.json())).toContain(id);
    const sus = await other.app.request(`/v1/previews/${id}/suspend`, {
      method: 'POST',
      headers: bearer(h.alice.jwt),
    });
    expect(sus.status, await sus.clone().text()).toBe(200);
    expect(((await sus.json()) as { state: string }).state).toBe('suspended');
    expect(await other.tiers.browser?.status(id)).toEqual({ phase: 'suspended' });
    const res = await other.app.request(`/v1/previews/${id}/resume`, {
      method: 'POST',
      headers: bearer(h.alice.jwt),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    await other.previews.waitReady(id, 10_000);
    const del = await other.app.request(`/v1/previews/${id}`, {
      method: 'DELETE',
      headers: bearer(h.alice.jwt),
    });
    expect(del.status).toBeLessThan(300);
    expect(await other.tiers.browser?.destroy(id)).toBe(false);
    expect(await h.router.tiers.browser?.status(id)).toBeUndefined();
    expect((await h.router.store.get(id))?.state).toBe('ended');
  });
});
