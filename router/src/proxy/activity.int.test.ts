/**
 * Idle and activity (router README): in Chromium, through the real preview proxy, a person using a
 * single-page app that never reloads keeps the preview active; a hidden tab that only polls does
 * not, and its polls do not wake the suspended preview; a just-woken preview survives the next check.
 */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { launchChromium } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness, silent } from '../../test/harness.ts';
import { createLocalServerTier } from '../../test/local-tier.ts';
import { idleJob } from '../jobs/jobs.ts';

/** A single-page app: one document; with `?poll` it fetches `/data.json` every 50 ms forever. */
const SPA = {
  'index.html':
    '<!doctype html><html><head><title>spa</title></head><body><h1 id="t">spa</h1><script src="/app.js"></script></body></html>',
  'app.js': `window.polls = 0;
if (new URLSearchParams(location.search).has('poll'))
  setInterval(() => fetch('/data.json').then((r) => { window.polls++; window.lastStatus = r.status; }), 50);
`,
  'data.json': '{"ok":true}',
};

/** A tab nobody looks at: hidden and unfocused, as the Page Visibility API reports a background tab. */
const HIDDEN_TAB = () => {
  Object.defineProperty(Document.prototype, 'visibilityState', { get: () => 'hidden' });
  Object.defineProperty(Document.prototype, 'hidden', { get: () => true });
  Document.prototype.hasFocus = () => false;
};

describe('idle and activity, in Chromium through the preview proxy', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  let chrome: Awaited<ReturnType<typeof launchChromium>>;
  const fleet = createLocalServerTier({ autoReady: true });
  const idle = () =>
    idleJob({
      previews: h.router.previews,
      nodes: h.router.nodes,
      log: silent,
      metrics: h.router.metrics,
      idleSuspendMs: 60 * 60_000,
      idleDestroyMs: 24 * 60 * 60_000,
    });
  const age = (id: string) =>
    h.db.pool.query(
      `UPDATE preview_sessions SET last_edit_at = now() - interval '2 hours', last_view_at = now() - interval '2 hours' WHERE id = $1`,
      [id],
    );
  const lastView = async (id: string) =>
    (
      await h.db.pool.query<{ t: Date }>('SELECT last_view_at AS t FROM preview_sessions WHERE id = $1', [id])
    ).rows[0]!.t.getTime();
  const state = async (id: string) => (await h.router.store.get(id))?.state;
  const until = async (what: string, fn: () => Promise<boolean>) => {
    for (let i = 0; i < 200; i++) {
      if (await fn()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  /** A ready preview of the SPA and its link (`?token=`, plus `query`). */
  const create = async (query = '') => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: SPA, serverOnly: true }),
    });
    const p = (await res.json()) as { id: string; previewUrl: string };
    await h.router.previews.waitReady(p.id, 20_000);
    const token = new URL(p.previewUrl).searchParams.get('token')!;
    return {
      id: p.id,
      link: `http://${p.id}.preview.localhost:${port}/?${query}${query ? '&' : ''}token=${token}`,
    };
  };
  const open = async (link: string, hidden = false): Promise<Page> => {
    const page = await chrome.context.newPage();
    if (hidden) await page.addInitScript(HIDDEN_TAB);
    await page.goto(link);
    await page.waitForSelector('#t');
    // The proxy gave the page its activity client.
    await page.waitForFunction(() => (window as { __previewActivity?: boolean }).__previewActivity === true);
    return page;
  };

  beforeAll(async () => {
    h = await createHarness({
      env: { ACTIVITY_THROTTLE_MS: '1', MAX_LIVE_PREVIEWS_PER_USER: '100' },
      tiers: () => ({ browser: createBrowserTier(), docker: fleet }),
    });
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    port = (server.address() as AddressInfo).port;
    chrome = await launchChromium();
  });
  afterAll(async () => {
    await chrome?.close();
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
  });

  it('a person using a single-page app that never reloads is activity: the idle check leaves it running', async () => {
    const { id, link } = await create();
    const page = await open(link);
    await age(id);
    const before = await lastView(id);
    // Input, no navigation: the page's client reports it.
    await page.mouse.click(5, 5);
    await page.keyboard.press('a');
    await until('the ping to move last_view_at', async () => (await lastView(id)) > before);
    expect((await idle()).suspended).toBe(0);
    expect(await state(id)).toBe('ready');
    await page.close();
  });

  it('a hidden tab that only polls is not: the preview is suspended, and the polls do not wake it', async () => {
    const { id, link } = await create('poll');
    const page = await open(link, true);
    await age(id);
    const before = await lastView(id);
    const polls = () => page.evaluate(() => (window as { polls?: number }).polls ?? 0);
    await until('the tab to poll', async () => (await polls()) >= 20);
    expect(await lastView(id)).toBe(before);
    await idle();
    expect(await state(id)).toBe('suspended');
    // Its polls now get the status page and leave the preview asleep.
    const after = await polls();
    await until('more polls', async () => (await polls()) >= after + 20);
    expect(await page.evaluate(() => (window as { lastStatus?: number }).lastStatus)).toBe(503);
    expect(await state(id)).toBe('suspended');
    await page.close();
  });

  it('an explicit suspend stays while the open page only sends heartbeats; input on the page wakes it', async () => {
    const { id, link } = await create();
    const page = await open(link);
    const suspended = await h.router.app.request(`/v1/previews/${id}/suspend`, {
      method: 'POST',
      headers: bearer(h.alice.jwt),
    });
    expect(suspended.status).toBeLessThan(300);
    const ping = (why: string) =>
      page.evaluate(
        async (u) => (await fetch(u, { method: 'POST', credentials: 'same-origin' })).status,
        `/__router/activity?why=${why}`,
      );
    // The client's heartbeat (every 20 s while the page is focused) and its load ping.
    expect(await ping('beat')).toBe(204);
    expect(await ping('load')).toBe(204);
    await new Promise((r) => setTimeout(r, 300));
    expect(await state(id)).toBe('suspended');
    // A person clicks in the page: the client's input ping wakes it.
    await page.mouse.click(5, 5);
    await until('the click to wake the preview', async () => (await state(id)) !== 'suspended');
    await h.router.previews.waitReady(id, 20_000);
    await page.close();
  });

  it('a just-woken preview is not suspended at the next check: woken by a page view, or by the API', async () => {
    for (const wake of ['page', 'api'] as const) {
      const { id, link } = await create();
      await age(id);
      await idle();
      expect(await state(id)).toBe('suspended');
      if (wake === 'page') {
        // A person opens it: the view wakes it and the request is held until it is ready.
        const page = await open(link);
        expect(await page.textContent('#t')).toBe('spa');
        await page.close();
      } else {
        const res = await h.router.app.request(`/v1/previews/${id}/resume`, {
          method: 'POST',
          headers: bearer(h.alice.jwt),
        });
        expect(res.status).toBeLessThan(300);
        await h.router.previews.waitReady(id, 20_000);
      }
      expect(await state(id)).toBe('ready');
      expect((await idle()).suspended).toBe(0);
      expect(await state(id), `woken by ${wake}`).toBe('ready');
    }
  });
});
