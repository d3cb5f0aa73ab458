import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { launchChromium } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { bearer, createHarness, type Harness, VITE_FILES } from '../../test/harness.ts';
import { createLocalServerTier } from '../../test/local-tier.ts';

type LocalTier = ReturnType<typeof createLocalServerTier>;

/** A raw HTTP request with an explicit Host (Node's fetch resolves *.localhost differently). */
function hostRequest(port: number, host: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    },
  );
}

async function until<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  what: string,
  ms = 20_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('preview proxy and SSE on a real server', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  let tier: LocalTier;

  beforeAll(async () => {
    h = await createHarness({
      tiers: () => ({ browser: createBrowserTier(), docker: createLocalServerTier() }),
    });
    tier = h.router.previews.tiers.docker as LocalTier;
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
  });

  const create = async (jwt = h.alice.jwt) => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(jwt) },
      body: JSON.stringify({ files: VITE_FILES, serverOnly: true }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { id: string; previewUrl: string; state: string };
  };
  const cookieFor = async (p: { id: string; previewUrl: string }) => {
    const url = new URL(p.previewUrl);
    const res = await hostRequest(port, `${p.id}.preview.localhost:${port}`, `${url.pathname}${url.search}`);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/');
    const setCookie = res.headers['set-cookie']?.[0] ?? '';
    expect(setCookie).toMatch(/^__preview_access=/);
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=None', 'Partitioned', 'Path=/'])
      expect(setCookie).toContain(attr);
    return setCookie.split(';')[0]!;
  };

  it('token → cookie; status page while installing; the app once ready; HTTP and WebSocket share the checks', async () => {
    const p = await create();
    expect(p.state).toBe('starting');
    const host = `${p.id}.preview.localhost:${port}`;
    // No cookie: a page, never a blank frame, and no upstream access.
    const anon = await hostRequest(port, host, '/');
    expect(anon.status).toBe(401);
    expect(anon.body).toContain('Open this preview from the editor');
    expect(anon.headers['x-upstream']).toBeUndefined();

    const cookie = await cookieFor(p);
    tier.setPhase(p.id, 'installing', ['added 12 packages in 1s']);
    await until(
      async () =>
        (await h.router.events.recent(p.id)).some((e) => e.type === 'status' && e.phase === 'installing'),
      'installing status',
    );
    await until(
      async () => (await h.router.events.lastLogLines(p.id)).includes('added 12 packages in 1s'),
      'log line',
    );
    const installing = await hostRequest(port, host, '/', { cookie });
    expect(installing.status).toBe(503);
    expect(installing.headers['x-preview-status']).toBe('installing');
    expect(installing.body).toContain('Installing dependencies');
    expect(installing.body).toContain('added 12 packages in 1s');
    expect(installing.body).toContain("new EventSource('/__router/events')");

    // A WebSocket upgrade before ready is refused, like HTTP.
    const early = new WebSocket(`ws://127.0.0.1:${port}/__hmr`, { headers: { host, cookie } });
    const earlyStatus = await new Promise<number>((r) =>
      early.on('unexpected-response', (_q, res) => r(res.statusCode ?? 0)),
    );
    expect(earlyStatus).toBe(503);

    tier.setPhase(p.id, 'ready');
    await until(async () => (await h.router.store.get(p.id))?.state === 'ready', 'ready');
    const app = await hostRequest(port, host, '/', { cookie, accept: 'text/html' });
    expect(app.status).toBe(200);
    expect(app.headers['x-upstream']).toBe('local');
    expect(app.body).toBe(VITE_FILES['index.html']);
    const js = await hostRequest(port, host, '/main.js', { cookie });
    expect(js.body).toBe(VITE_FILES['main.js']);

    // WebSocket upgrade through the proxy: echo, and an edit pushes an update.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/__hmr`, { headers: { host, cookie } });
    const messages: string[] = [];
    ws.on('message', (m) => messages.push(m.toString()));
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    ws.send('ping');
    await until(() => messages.includes('echo:ping'), 'echo');
    const put = await h.router.app.request(`/v1/previews/${p.id}/files`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'main.js', content: 'console.log(2)' }],
      }),
    });
    expect(put.status).toBe(200);
    await until(
      () => messages.includes(JSON.stringify({ type: 'update', path: 'main.js' })),
      'update over the proxied socket',
    );
    ws.close();

    // The upgrade checks the cookie too: none, or another preview's, is refused.
    for (const headers of [{ host }, { host, cookie: cookie.replace(/=.*/, '=forged') }]) {
      const bad = new WebSocket(`ws://127.0.0.1:${port}/__hmr`, { headers });
      expect(
        await new Promise<number>((r) => bad.on('unexpected-response', (_q, res) => r(res.statusCode ?? 0))),
      ).toBe(401);
    }
    const other = await create();
    const otherHost = `${other.id}.preview.localhost:${port}`;
    expect((await hostRequest(port, otherHost, '/', { cookie })).status).toBe(401);
  });

  it('another user’s link token does not open a preview; expired or mismatched tokens are refused', async () => {
    const p = await create();
    const bobs = await create(h.bob.jwt);
    const bobToken = new URL(bobs.previewUrl).searchParams.get('token')!;
    const res = await hostRequest(port, `${p.id}.preview.localhost:${port}`, `/?token=${bobToken}`);
    expect(res.status).toBe(401);
    expect(res.headers['set-cookie']).toBeUndefined();
  });

  it('a suspended preview wakes on a request, which is held until ready', async () => {
    const p = await create();
    const cookie = await cookieFor(p);
    tier.setPhase(p.id, 'ready');
    await until(async () => (await h.router.store.get(p.id))?.state === 'ready', 'ready');
    const sus = await h.router.app.request(`/v1/previews/${p.id}/suspend`, {
      method: 'POST',
      headers: bearer(h.alice.jwt),
    });
    expect(((await sus.json()) as { state: string }).state).toBe('suspended');
    const res = await hostRequest(port, `${p.id}.preview.localhost:${port}`, '/', { cookie });
    expect(res.status).toBe(200);
    expect(res.body).toBe(VITE_FILES['index.html']);
    expect((await h.router.store.get(p.id))?.state).toBe('ready');
  });

  it('SSE: the API stream (owner only) and the preview-origin stream follow state changes', async () => {
    const p = await create();
    const read = async (url: string, headers: Record<string, string>, want: RegExp) => {
      const ac = new AbortController();
      const res = await fetch(url, { headers, signal: ac.signal });
      if (res.status !== 200) {
        ac.abort();
        return { status: res.status, text: '' };
      }
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      const reader = res.body!.getReader();
      let text = '';
      const dec = new TextDecoder();
      const ready = until(async () => (want.test(text) ? true : undefined), `SSE ${want}`);
      void (async () => {
        for (;;) {
          const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
          if (done) return;
          text += dec.decode(value);
        }
      })();
      return { status: 200, text: '', ready, close: () => ac.abort(), get: () => text };
    };
    const api = `http://127.0.0.1:${port}/v1/previews/${p.id}/events`;
    expect((await read(api, {}, /x/)).status).toBe(401);
    expect((await read(api, bearer(h.bob.jwt), /x/)).status).toBe(404);
    const owner = await read(api, bearer(h.alice.jwt), /"state":"ready"/);
    expect(owner.status).toBe(200);
    tier.setPhase(p.id, 'ready');
    await owner.ready;
    expect(owner.get?.()).toMatch(/event: state\ndata: \{"type":"state","state":"starting"/);
    owner.close?.();
    // EventSource-style ?access_token= works for the editor.
    const viaQuery = await read(`${api}?access_token=${h.alice.jwt}`, {}, /event: state/);
    await viaQuery.ready;
    viaQuery.close?.();
  });

  it('sync WebSocket authorization matrix: owner and service key get in; others get 4404 / 4401', async () => {
    const p = await create();
    const nodeReg = await h.router.nodes.register({
      joinToken: h.joinToken,
      name: `ws-node-${Date.now()}`,
      url: 'http://127.0.0.1:9',
      capacity: { slots: 1, used: 0, warm: {} },
      runtime: 'docker',
    });
    const outcome = (token: string | undefined) =>
      new Promise<{ opened: boolean; code: number; frames: string[] }>((resolve) => {
        const frames: string[] = [];
        let opened = false;
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/previews/${p.id}/sync`, {
          headers: token ? { authorization: `Bearer ${token}` } : {},
        });
        ws.on('open', () => {
          opened = true;
          ws.send(JSON.stringify({ type: 'hello', lastAckedSeq: 0, clientId: 'matrix' }));
          // Still open after the hello: admitted.
          setTimeout(() => ws.close(1000), 300);
        });
        ws.on('message', (m) => frames.push(m.toString()));
        ws.on('close', (code) => resolve({ opened, code, frames }));
        ws.on('error', () => {});
      });
    const owner = await outcome(h.alice.jwt);
    expect(owner.opened).toBe(true);
    expect([4401, 4404]).not.toContain(owner.code);
    const service = await outcome(h.alice.apiKey);
    expect([4401, 4404]).not.toContain(service.code);
    expect((await outcome(h.bob.jwt)).code).toBe(4404);
    expect((await outcome(undefined)).code).toBe(4401);
    expect((await outcome(nodeReg.credential)).code).toBe(4401);
  });

  it('Chromium: the preview link sets the cookie, shows the status page, then the app once ready', async () => {
    const p = await create();
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(p.previewUrl.replace('127.0.0.1', 'preview.localhost'));
      expect(new URL(page.url()).search).toBe(''); // redirected to the clean URL
      await page.waitForSelector('meta[name="preview-status"]', { state: 'attached' });
      expect(await page.title()).toMatch(/Preparing|Installing|Starting/);
      tier.setPhase(p.id, 'ready');
      // The status page reloads itself over SSE; the app's own page replaces it.
      await page.waitForFunction(() => document.querySelector('h1')?.textContent === 'hi', undefined, {
        timeout: 20_000,
      });
      const cookies = await chrome.context.cookies();
      expect(cookies.find((c) => c.name === '__preview_access')).toMatchObject({
        httpOnly: true,
        secure: true,
        sameSite: 'None',
      });
    } finally {
      await chrome.close();
    }
  });
});
