/**
 * The React binding in Chromium against a real router (Postgres, auth, SSE, sync hub, preview
 * proxy) whose server tier is the in-process local test tier: a small React app in StrictMode
 * (test/react-app.tsx, React's development build) uses `usePreviewSession` + `PreviewPanel`.
 */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createHarness, type Harness } from '@preview/router/testkit/harness';
import { createLocalServerTier } from '@preview/router/testkit/local-tier';
import { launchChromium } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { build } from 'esbuild';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestApi } from '../../test/react-app.tsx';
import { buildBundlerAssets } from '../runtimes/bundler/assets.ts';
import { REACT_PROJECT } from '../runtimes/contract.case.test.ts';

const fleet = createLocalServerTier({ autoReady: false });
let h: Harness;
let server: http.Server;
let base: string;
let chrome: Awaited<ReturnType<typeof launchChromium>>;

beforeAll(async () => {
  const out = await build({
    entryPoints: [new URL('../../test/react-app.tsx', import.meta.url).pathname],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'chrome120',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"development"' },
    write: false,
  });
  const bundle = out.outputFiles[0]?.text ?? '';
  // The bundler runtime runs in the editor's tab: its worker, service worker and vendor React are
  // served from the test page's origin.
  const assets = await buildBundlerAssets();
  h = await createHarness({
    env: { MAX_LIVE_PREVIEWS_PER_USER: '100' },
    tiers: () => ({ browser: createBrowserTier(), docker: fleet }),
  });
  const types: Record<string, string> = {
    js: 'text/javascript',
    wasm: 'application/wasm',
    json: 'application/json',
  };
  const page = (req: Request): Response | undefined => {
    const url = new URL(req.url);
    if (url.hostname !== '127.0.0.1') return undefined;
    if (url.pathname === '/__react/app.js')
      return new Response(bundle, { headers: { 'content-type': 'text/javascript' } });
    if (url.pathname === '/__react/') {
      // `<` escaped: the project's index.html holds a `</script>`.
      const json = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');
      const project = url.searchParams.has('browser')
        ? `<script>window.__files=${json(REACT_PROJECT)};window.__vendor=${json(assets.importMap)}</script>`
        : '';
      return new Response(
        `<!doctype html><div id="root"></div>${project}<script src="/__react/app.js"></script>`,
        { headers: { 'content-type': 'text/html' } },
      );
    }
    const asset = assets.files.get(url.pathname.slice(1));
    if (asset !== undefined)
      return new Response(asset as BodyInit, {
        headers: { 'content-type': types[url.pathname.split('.').pop() ?? ''] ?? 'application/octet-stream' },
      });
    return undefined;
  };
  server = serve({
    // The env carries Node's request/response: the preview proxy streams through them.
    fetch: (req: Request, env: unknown) => page(req) ?? h.router.app.fetch(req, env as never),
    hostname: '127.0.0.1',
    port: 0,
  }) as unknown as http.Server;
  await new Promise((r) => server.once('listening', r));
  h.router.attach(server);
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  chrome = await launchChromium();
});
afterAll(async () => {
  await chrome?.close();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await h?.close();
  await fleet.close();
});

const session = (page: Page) =>
  page.evaluate(() => {
    const s = (globalThis as unknown as { __app: TestApi }).__app.session;
    return s && { previewId: s.previewId, state: s.state, tier: s.tier, logs: s.logs, error: s.error };
  });

const previewsOfAlice = async () =>
  (
    await h.db.pool.query<{ id: string; state: string }>(
      'SELECT id, state FROM preview_sessions WHERE user_id = $1 ORDER BY created_at',
      [h.alice.id],
    )
  ).rows;

const until = async <T>(what: string, fn: () => Promise<T | undefined | false>): Promise<T> => {
  for (let i = 0; i < 300; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
};

/** The test app on the browser tier, once the project renders in its frame. */
const openBrowserTier = async () => {
  const page = await chrome.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const frame = page.frameLocator('[data-preview="frame"] iframe');
  try {
    await page.goto(`${base}/__react/?browser=1&token=${encodeURIComponent(h.alice.jwt)}`);
    await frame.locator('main').filter({ hasText: 'react:contract:42' }).waitFor();
  } catch (e) {
    await page.close();
    throw e;
  }
  return { page, errors, frame };
};

/** Once the moved preview's server sandbox is ready, the panel frames it (its preview URL). */
const showsServerTier = async (page: Page, id: string) => {
  await until('the server sandbox', async () => fleet.files(id));
  fleet.setPhase(id, 'ready');
  await until('the panel to frame the server tier', async () =>
    (await page.locator('[data-preview="frame"] iframe').getAttribute('data-tier')) === 'docker'
      ? true
      : undefined,
  );
  expect(await page.locator('[data-preview="frame"] iframe').getAttribute('src')).toContain(
    `${id}.preview.localhost`,
  );
};

describe('usePreviewSession + PreviewPanel in Chromium (real router, local server tier)', () => {
  it('creates one preview under StrictMode, shows status, error overlay, the iframe and edits; unmount stops it', async () => {
    const page = await chrome.context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    try {
      await page.goto(`${base}/__react/?token=${encodeURIComponent(h.alice.jwt)}`);
      // The status page while the sandbox installs.
      const status = page.locator('[data-preview="status"]');
      await status.waitFor();
      const { previewId: id } = await until('the preview id', async () => {
        const s = await session(page);
        return s?.previewId ? s : undefined;
      });
      expect(await status.innerText()).toMatch(/Preview (starting|provisioning)/);
      // StrictMode mounted, unmounted and mounted again: still one preview, and it lives.
      expect(fleet.creates).toBe(1);
      expect(await previewsOfAlice()).toEqual([{ id, state: 'starting' }]);

      // The sandbox reports a build error: the overlay names file, line and message.
      fleet.setPhase(
        id!,
        'error',
        ['vite v8 dev server', 'x Build failed'],
        'src/App.jsx:3:7: ERROR: Unexpected "}"',
      );
      const overlay = page.locator('[data-preview="error"]');
      await overlay.waitFor();
      expect(await page.locator('[data-preview="error-location"]').innerText()).toBe('src/App.jsx:3:7');
      expect(await page.locator('[data-preview="error-message"]').innerText()).toBe('Unexpected "}"');
      // The log lines came over SSE, bounded to maxLogLines (5).
      await page.waitForFunction(() =>
        document.querySelector('#logs')?.textContent?.includes('x Build failed'),
      );
      fleet.setPhase(id!, 'error', ['a', 'b', 'c', 'd', 'e', 'f']);
      await page.waitForFunction(() => document.querySelector('#logs')?.textContent?.endsWith('f'));
      expect((await session(page))?.logs).toEqual(['b', 'c', 'd', 'e', 'f']);

      // Fixed and ready: the overlay goes, the iframe shows the app through the preview proxy.
      fleet.setPhase(id!, 'ready');
      await overlay.waitFor({ state: 'detached' });
      await until('state ready', async () => (await session(page))?.state === 'ready');
      const frame = page.frameLocator('[data-preview="frame"] iframe');
      await frame.locator('#msg').filter({ hasText: 'hello from the preview' }).waitFor();
      expect(await page.locator('[data-preview="status"]').count()).toBe(0);
      expect(await page.locator('iframe').getAttribute('src')).toContain(`${id}.preview.localhost`);

      // write → the sync socket → the sandbox → the iframe shows it.
      await page.evaluate(() => {
        (globalThis as unknown as { __app: TestApi }).__app.session!.write(
          'index.html',
          '<!doctype html><html><body><h1 id="msg">edited in React</h1><script src="/reload.js"></script></body></html>',
        );
      });
      await frame.locator('#msg').filter({ hasText: 'edited in React' }).waitFor();
      expect(fleet.files(id!)?.get('index.html')).toContain('edited in React');
      await until('the edit persisted', async () => {
        const r = await h.db.pool.query<{ content: Buffer }>(
          "SELECT content FROM project_files WHERE preview_id = $1 AND path = 'index.html'",
          [id],
        );
        return r.rows[0]?.content.toString().includes('edited in React');
      });

      // The app throws: the router's injected client reports it from the frame; the overlay says where.
      const write = (files: Record<string, string>) =>
        page.evaluate((f) => {
          for (const [p, c] of Object.entries(f))
            (globalThis as unknown as { __app: TestApi }).__app.session!.write(p, c);
        }, files);
      const html = (text: string, extra = '') =>
        `<!doctype html><html><body><h1 id="msg">${text}</h1><script src="/reload.js"></script>${extra}</body></html>`;
      await write({
        'boom.js': "function render() {\n  throw new Error('boom in render');\n}\nrender();\n",
        'index.html': html('about to throw', '<script src="/boom.js"></script>'),
      });
      await frame.locator('#msg').filter({ hasText: 'about to throw' }).waitFor();
      await overlay.waitFor();
      expect(await overlay.innerText()).toContain('Runtime error');
      expect(await page.locator('[data-preview="error-location"]').innerText()).toMatch(/^boom\.js:2:\d+$/);
      expect(await page.locator('[data-preview="error-message"]').innerText()).toContain('boom in render');
      // With onOpenLocation the location is a button: a click hands the editor file, line and column.
      const [, col] = /^boom\.js:2:(\d+)$/.exec(
        await page.locator('[data-preview="error-location"]').innerText(),
      )!;
      await page.click('button[data-preview="error-location"]');
      expect(await page.evaluate(() => (globalThis as unknown as { __app: TestApi }).__app.opened)).toEqual([
        { file: 'boom.js', line: 2, column: Number(col) },
      ]);
      // onMounted handed over the shown preview (its iframe is the panel's).
      expect(
        await page.evaluate(() => {
          const m = (globalThis as unknown as { __app: TestApi }).__app.mounted;
          return !!m && m.iframe === document.querySelector('[data-preview="frame"] iframe');
        }),
      ).toBe(true);
      // The fix: the edit clears it, and the app no longer throws.
      await write({ 'index.html': html('fixed') });
      await frame.locator('#msg').filter({ hasText: 'fixed' }).waitFor();
      expect(await page.locator('[data-preview="error"]').count()).toBe(0);

      // Unmount: the preview is stopped (once, not by a re-render).
      await page.evaluate(() => (globalThis as unknown as { __app: TestApi }).__app.setOpen(false));
      await page.locator('#closed').waitFor();
      await until('the router to end the preview', async () => {
        const s = await h.router.store.get(id!);
        return s && ['stopping', 'ended'].includes(s.state);
      });
      expect(fleet.files(id!)).toBeUndefined();
      expect(errors.filter((e) => !e.includes('boom in render'))).toEqual([]); // only the app's own
    } finally {
      await page.close();
    }
  });

  it('an editor closed while the create is under way still stops the preview it made', async () => {
    const before = (await previewsOfAlice()).length;
    const page = await chrome.context.newPage();
    try {
      await page.goto(`${base}/__react/?quick=1&token=${encodeURIComponent(h.alice.jwt)}`);
      await page.locator('#closed').waitFor();
      const made = await until('the quick preview', async () => {
        const rows = await previewsOfAlice();
        return rows.length > before ? rows.slice(before) : undefined;
      });
      expect(made).toHaveLength(1);
      await until('it to end', async () => {
        const s = await h.router.store.get(made[0]!.id);
        return s && ['stopping', 'ended'].includes(s.state);
      });
    } finally {
      await page.close();
    }
  });

  it('browser tier: the bundler runtime in the tab; write rebuilds it, a build error shows in the overlay, a fix clears it', async () => {
    const { page, errors, frame } = await openBrowserTier();
    try {
      const s = await session(page);
      expect(s?.tier).toBe('browser');
      expect(await page.locator('iframe').getAttribute('src')).toContain('/__preview-bundler/');
      expect(fleet.files(s!.previewId!)).toBeUndefined(); // no server sandbox
      const write = (path: string, content: string) =>
        page.evaluate(
          ([p, c]) => (globalThis as unknown as { __app: TestApi }).__app.session!.write(p!, c!),
          [path, content],
        );
      const app = (text: string) =>
        `import { useState } from 'react';\nexport function App({ name }: { name: string }) {\n  const [n] = useState<number>(2);\n  return <main className="app">${text}:{name}:{n}</main>;\n}\n`;

      await write('src/App.tsx', app('edited'));
      await frame.locator('main').filter({ hasText: 'edited:contract:2' }).waitFor();
      await until('the edit persisted', async () => {
        const r = await h.db.pool.query<{ content: Buffer }>(
          "SELECT content FROM project_files WHERE preview_id = $1 AND path = 'src/App.tsx'",
          [s!.previewId],
        );
        return r.rows[0]?.content.toString().includes('edited');
      });

      // A syntax error on line 4: the runtime's build error, with file and line, over the preview.
      await write('src/App.tsx', app('broken').replace('</main>;', '</main>;;}}'));
      await page.locator('[data-preview="error"]').waitFor();
      expect(await page.locator('[data-preview="error-location"]').innerText()).toMatch(
        /^src\/App\.tsx:4:\d+$/,
      );
      expect(await page.locator('[data-preview="error-message"]').innerText()).not.toBe('');

      await write('src/App.tsx', app('fixed'));
      await page.locator('[data-preview="error"]').waitFor({ state: 'detached' });
      await frame.locator('main').filter({ hasText: 'fixed:contract:2' }).waitFor();

      await page.evaluate(() => (globalThis as unknown as { __app: TestApi }).__app.setOpen(false));
      await until('the router to end the preview', async () => {
        const st = await h.router.store.get(s!.previewId!);
        return st && ['stopping', 'ended'].includes(st.state);
      });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 180_000); // esbuild-wasm's first start in a tab takes a while on a shared machine

  it("a browser-tier preview moved to a server tier by someone else: the panel frames the server once its URL is known, though the tab runtime's teardown never settles", async () => {
    const { page, errors } = await openBrowserTier();
    try {
      const id = (await session(page))!.previewId!;
      // The bundler runtime's teardown clears its cache; here that never settles (a host frame that
      // does not answer, a cache the browser keeps busy): the server tier's frame must not wait for it.
      await page.evaluate(() => {
        CacheStorage.prototype.delete = () => new Promise<boolean>(() => {});
      });
      // Another client (a second tab, the CLI) moves it; this page learns of it over SSE only, and
      // SSE's state events carry the tier but no preview URL.
      const moved = await h.router.app.request(`/v1/previews/${id}/placement`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${h.alice.jwt}` },
        body: JSON.stringify({ tier: 'docker', reason: 'moved from another tab' }),
      });
      expect(moved.status).toBe(200);
      await showsServerTier(page, id);
      expect(await page.locator('[data-preview="error"]').count()).toBe(0);
      expect((await session(page))?.error).toBeFalsy();
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 180_000);

  it("a move whose answers are lost on the way back (the tab's network changed): the client sends the repeat-safe calls again and the panel frames the server tier", async () => {
    const { page, errors } = await openBrowserTier();
    try {
      const id = (await session(page))!.previewId!;
      // The router acts on the first move and on the first read of the preview after it, but their
      // answers never reach the tab: what Chromium does to requests in flight when the host's
      // interfaces change (ERR_NETWORK_CHANGED, a sandbox's container starting beside it).
      const lost: string[] = [];
      const loseFirstAnswer = (method: string, pathname: string) =>
        page.route(
          (url) => url.pathname === pathname,
          async (route) => {
            const what = `${method} ${pathname}`;
            if (route.request().method() !== method || lost.includes(what)) return route.fallback();
            lost.push(what);
            await route.fetch();
            await route.abort('connectionreset');
          },
        );
      await loseFirstAnswer('POST', `/v1/previews/${id}/placement`);
      await loseFirstAnswer('GET', `/v1/previews/${id}`);
      const moveError = await page.evaluate(() =>
        (globalThis as unknown as { __app: TestApi }).__app
          .session!.store.moveToServer('moved in a test')
          .then(
            () => null,
            (e: Error) => e.message,
          ),
      );
      expect(moveError).toBeNull();
      await showsServerTier(page, id);
      expect(lost).toEqual([`POST /v1/previews/${id}/placement`, `GET /v1/previews/${id}`]);
      expect((await session(page))?.error).toBeFalsy();
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 180_000);

  it('a refused create shows in the overlay (bad token)', async () => {
    const page = await chrome.context.newPage();
    try {
      await page.goto(`${base}/__react/?token=not-a-token`);
      await page.locator('[data-preview="error"]').waitFor();
      expect(await page.locator('[data-preview="error-message"]').innerText()).toMatch(/token|unauthori/i);
      expect((await session(page))?.state).toBe('failed');
    } finally {
      await page.close();
    }
  });
});
