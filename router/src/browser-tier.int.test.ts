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
/** While set, the browser tier's `status` waits for it before answering (the readiness watch is held there). */
let statusGate: Promise<void> | undefined;
let statusCalled: (() => void) | undefined;
let server: Server;
let port: number;

beforeAll(async () => {
  h = await createHarness({
    tiers: ({ browserPlacements }) => {
      const browser = createBrowserTier({ placements: browserPlacements });
      const status = browser.status.bind(browser);
      browser.status = async (id) => {
        const answer = await status(id);
        statusCalled?.();
        await statusGate;
        return answer;
      };
      return { browser };
    },
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

describe('browser tier: a preview stopped while it resumes', () => {
  // preview-events.int.test under load: the readiness watch of a resume stored `ready` after the
  // stop's `ended`, and the events stream (which closes at `ended`) never sent it.
  it('ends at ended: the readiness watch stores nothing after it', async () => {
    const id = await createBrowserPreview();
    const call = (path: string, method = 'POST') =>
      h.router.app.request(`/v1/previews/${id}${path}`, { method, headers: bearer(h.alice.jwt) });
    expect((await call('/suspend')).status).toBe(200);
    let release!: () => void;
    statusGate = new Promise((r) => {
      release = r;
    });
    const watching = new Promise<void>((r) => {
      statusCalled = r;
    });
    // The watch's attempt at `ready`, however it ends.
    const store = h.router.store;
    const transition = store.transition.bind(store);
    const readyTried = new Promise<void>((done) => {
      store.transition = async (...args) => {
        try {
          return await transition(...args);
        } finally {
          if (args[1] === 'ready') done();
        }
      };
    });
    try {
      expect((await call('/resume')).status).toBe(200);
      await watching; // the watch read `starting`, and the tier's answer (`ready`) is on its way
      expect((await call('', 'DELETE')).status).toBeLessThan(300);
      release();
      await readyTried;
    } finally {
      statusGate = undefined;
      statusCalled = undefined;
      store.transition = transition;
    }
    expect((await h.router.store.get(id))?.state).toBe('ended');
    const events = await h.router.store.recentEvents(id);
    expect(events.at(-1)).toMatchObject({ kind: 'state', data: { state: 'ended' } });
  });
});
