/**
 * Issue 15, the editor page: the router builds it (Vite) and serves it at `/`; in Chromium a new
 * user picks a template, sees the preview render in the iframe (another origin, through the proxy),
 * edits a file in CodeMirror and sees the change, adds a file in a new folder, reloads the page and
 * finds the project restored from the router. The server tier is the in-process local tier (a real
 * HTTP server per preview serving its files). Screenshots go to a temp dir kept after the run.
 */

import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { serve } from '@hono/node-server';
import { launchChromium } from '@preview/testkit';
import { LIMITS } from '@preview/tiers';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { createLocalServerTier } from '../test/local-tier.ts';
import { ensureEditorBuild, once } from './editor-assets.ts';

type LocalTier = ReturnType<typeof createLocalServerTier>;

describe('the editor page in Chromium (local server tier)', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  let tier: LocalTier;
  let dir: string;
  /** Screenshots: kept after the run (a test artefact), the path is printed. */
  let shots: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'editor-page-'));
    shots = await mkdtemp(join(tmpdir(), 'editor-page-screenshots-'));
    // Built once here (the router would build it on the first request to `/` otherwise).
    const build = await ensureEditorBuild({ cacheDir: join(dir, 'editor-cache') });
    h = await createHarness({
      tiers: () => ({ docker: createLocalServerTier({ autoReady: true }) }),
      editor: once(async () => build),
    });
    tier = h.router.previews.tiers.docker as LocalTier;
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    port = (server.address() as AddressInfo).port;
  }, 180_000);

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const shot = (page: Page, name: string) => page.screenshot({ path: join(shots, `${name}.png`) });
  const frame = (page: Page) => page.frameLocator('#preview iframe');
  /** Replaces the open file's text in CodeMirror as a user would (select all, type). */
  async function typeInEditor(page: Page, text: string) {
    await page.click('#cm .cm-content');
    await page.keyboard.press('ControlOrMeta+a');
    await page.keyboard.insertText(text);
  }

  it('serves index.html and immutable assets with the cross-origin isolation headers', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('credentialless');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    const html = await res.text();
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset, html).toBeDefined();
    const js = await fetch(`http://127.0.0.1:${port}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect((await fetch(`http://127.0.0.1:${port}/assets/..%2F..%2Fetc%2Fpasswd`)).status).toBe(404);
  });

  it('GET /v1/templates needs a user; GET /v1/previews/:id/files is the owner’s only', async () => {
    const anon = await h.router.app.request('/v1/templates');
    expect(anon.status).toBe(401);
    const list = await h.router.app.request('/v1/templates', { headers: bearer(h.alice.jwt) });
    expect(list.status).toBe(200);
    const { templates } = (await list.json()) as {
      templates: Array<{ name: string; files: Record<string, string> }>;
    };
    const react = templates.find((t) => t.name === 'vite-react');
    expect(react?.files['src/App.jsx']).toContain('useState');
    expect(Object.keys(react?.files ?? {})).not.toContain('package-lock.json');

    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: { 'index.html': '<h1>mine</h1>' }, serverOnly: true }),
    });
    const { id } = (await res.json()) as { id: string };
    const own = await h.router.app.request(`/v1/previews/${id}/files`, { headers: bearer(h.alice.jwt) });
    expect(own.status).toBe(200);
    expect(await own.json()).toEqual({ 'index.html': '<h1>mine</h1>' });
    const other = await h.router.app.request(`/v1/previews/${id}/files`, { headers: bearer(h.bob.jwt) });
    expect(other.status).toBe(404);
    expect((await h.router.app.request(`/v1/previews/${id}/files`)).status).toBe(401);
    const bad = await h.router.app.request('/v1/previews/not-a-uuid/files', { headers: bearer(h.alice.jwt) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/id/);
  });

  it('pick a template, see it render, edit, add a file in a folder, reload and find the project', {
    timeout: 180_000,
  }, async () => {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${port}/#token=${h.alice.jwt}`);
      expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
      // Every template the router knows is in the picker.
      await page.waitForFunction(() => document.querySelectorAll('#template option').length > 0);
      const options = await page.$$eval('#template option', (os) =>
        os.map((o) => (o as HTMLOptionElement).value),
      );
      expect(options).toEqual(
        expect.arrayContaining(['vite-vanilla', 'vite-react', 'vite-vue', 'express-pg']),
      );
      await page.selectOption('#template', 'vite-vanilla');
      await page.click('#create');

      // The preview renders in the iframe (another origin, through the proxy).
      await frame(page).locator('#app').waitFor({ state: 'attached', timeout: 60_000 });
      expect(await frame(page).locator('title').textContent()).toBe('Vite vanilla preview');
      await page.waitForFunction(() =>
        /state: ready on docker/.test(document.getElementById('status')!.textContent!),
      );
      const status = (await page.textContent('#status')) ?? '';
      expect(status).toContain('docker: chosen');
      // The log panel is fed by the preview's SSE (the local tier's sandbox logs `npm install`).
      await page.locator('#log').filter({ hasText: 'npm install' }).waitFor({ timeout: 20_000 });
      const previewId = await page.evaluate(
        () => (window as unknown as { editorPage: { preview: { id: string } } }).editorPage.preview.id,
      );
      await shot(page, '1-rendered');

      // Edit index.html in CodeMirror: sent as typed (debounced) through the sync socket.
      await page.click('#tree span[data-path="index.html"]');
      expect(await page.textContent('#path')).toBe('index.html');
      const edited =
        '<!doctype html><html><head><title>Edited title</title></head><body><h1 id="edited">edited in the editor</h1></body></html>\n';
      await typeInEditor(page, edited);
      await expect.poll(() => tier.files(previewId)?.get('index.html'), { timeout: 20_000 }).toBe(edited);
      await page.click('#reload');
      await frame(page)
        .locator('#edited')
        .filter({ hasText: 'edited in the editor' })
        .waitFor({ timeout: 20_000 });
      await shot(page, '2-edited');

      // A new folder, then a new file in it (the path prompt starts in the selected folder).
      page.once('dialog', (d) => void d.accept('src/components'));
      await page.click('#new-folder');
      await page.locator('#tree span[data-path="src/components"]').waitFor();
      page.once('dialog', (d) => {
        expect(d.defaultValue()).toBe('src/components/');
        void d.accept('src/components/note.js');
      });
      await page.click('#new-file');
      expect(await page.textContent('#path')).toBe('src/components/note.js');
      await typeInEditor(page, 'export const note = "kept";\n');
      await expect
        .poll(async () => (await h.router.store.loadFiles(previewId))['src/components/note.js'], {
          timeout: 20_000,
        })
        .toBe('export const note = "kept";\n');
      await expect.poll(async () => (await h.router.store.loadFiles(previewId))['index.html']).toBe(edited);
      await shot(page, '3-new-file');

      // Reload: the same project comes back from the router (preview id in localStorage, files GET).
      await page.reload();
      await page.locator('#tree span[data-path="src/components/note.js"]').waitFor({ timeout: 30_000 });
      expect(
        await page.evaluate(
          () => (window as unknown as { editorPage: { preview: { id: string } } }).editorPage.preview.id,
        ),
      ).toBe(previewId);
      await page.click('#tree span[data-path="src/components/note.js"]');
      await expect.poll(() => page.textContent('#cm .cm-content')).toContain('export const note = "kept";');
      await frame(page).locator('#edited').waitFor({ timeout: 30_000 });
      await shot(page, '4-restored');
      expect(errors).toEqual([]);
      console.log(`editor page screenshots: ${shots}`);
    } finally {
      await chrome.close();
    }
  });

  it('open a folder (file input): node_modules/.git skipped, a project created; the overlay’s file:line opens that line', {
    timeout: 180_000,
  }, async () => {
    // A folder made here, as a user's disk has it.
    const folder = join(dir, 'my-app');
    const put = async (path: string, text: string | Buffer) => {
      await mkdir(dirname(join(folder, path)), { recursive: true });
      await writeFile(join(folder, path), text);
    };
    await put(
      'index.html',
      '<!doctype html><html><head><title>My folder app</title></head><body><h1 id="app">from a folder</h1><button id="boom">boom</button><script src="/src/boom.js"></script></body></html>\n',
    );
    // Throws on line 4, column 9 on a click: the router's injected client reports it from the frame.
    await put(
      'src/boom.js',
      "// a user's script\nfunction start() {\n  document.title += '!';\n  throw new Error('boom on line 4');\n}\ndocument.getElementById('boom').addEventListener('click', start);\n",
    );
    await put('logo.bin', Buffer.from([0, 1, 2, 255]));
    await put('node_modules/left-pad/index.js', 'module.exports = 1;\n');
    await put('.git/HEAD', 'ref: refs/heads/main\n');
    const tooBig = join(dir, 'too-big');
    await mkdir(tooBig, { recursive: true });
    await writeFile(join(tooBig, 'index.html'), '<h1>x</h1>');
    await writeFile(join(tooBig, 'huge.txt'), Buffer.alloc(LIMITS.fileBytes + 1, 97));

    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${port}/#token=${h.bob.jwt}`);
      await page.waitForSelector('#template option', { state: 'attached' });
      const before = await h.db.pool.query('SELECT count(*)::int AS n FROM preview_sessions');

      // Bad input: a file over the router's size rule; nothing is created, the rule is named.
      await page.setInputFiles('#open-folder-input', tooBig);
      await page.waitForFunction(() =>
        /rule file_size/.test(document.getElementById('status')!.textContent!),
      );
      expect(await page.textContent('#status')).toContain('huge.txt: file too large');
      expect((await h.db.pool.query('SELECT count(*)::int AS n FROM preview_sessions')).rows[0].n).toBe(
        before.rows[0].n,
      );

      await page.setInputFiles('#open-folder-input', folder);
      await page.locator('#tree span[data-path="src/boom.js"]').waitFor({ timeout: 20_000 });
      expect(await page.textContent('#status')).toMatch(/opened folder my-app: 3 files \(2 skipped/);
      expect(await page.locator('#tree span[data-path^="node_modules"]').count()).toBe(0);
      const previewId = await page.waitForFunction(
        () => (window as unknown as { editorPage: { preview?: { id: string } } }).editorPage.preview?.id,
      );
      const id = (await previewId.jsonValue()) as string;
      // The router has exactly the folder's files (binary as base64), none of node_modules or .git.
      await expect
        .poll(async () => Object.keys(await h.router.store.loadFiles(id)).sort())
        .toEqual(['index.html', 'logo.bin', 'src/boom.js']);
      expect((await h.router.store.loadFiles(id))['logo.bin']).toEqual({
        content: Buffer.from([0, 1, 2, 255]).toString('base64'),
        encoding: 'base64',
      });
      await frame(page).locator('#app').filter({ hasText: 'from a folder' }).waitFor({ timeout: 60_000 });
      // The injected client loads async: an error before it runs is not seen, so the click waits for it.
      const app = page.frames().find((f) => f.url().includes(id))!;
      await expect
        .poll(() =>
          app.evaluate(() => !!(window as unknown as { __previewActivity?: boolean }).__previewActivity),
        )
        .toBe(true);
      await frame(page).locator('#boom').click();

      // The app threw: the overlay names file:line:col; a click opens that file with the cursor there.
      const where = page.locator('#preview [data-preview="error-location"]');
      await where.waitFor({ timeout: 30_000 });
      expect(await where.textContent()).toBe('src/boom.js:4:9');
      await shot(page, '6-folder-runtime-error');
      await page.click('#tree span[data-path="index.html"]');
      expect(await page.textContent('#path')).toBe('index.html');
      await where.click();
      expect(await page.textContent('#path')).toBe('src/boom.js');
      const cursor = () =>
        page.evaluate(() => (window as unknown as { editorPage: { cursor: unknown } }).editorPage.cursor);
      expect(await cursor()).toEqual({ path: 'src/boom.js', line: 4, column: 9 });
      expect(await page.locator('#cm .cm-activeLine').textContent()).toContain(
        "throw new Error('boom on line 4')",
      );
      // The status bar names it too, and its location opens the file the same way.
      await page.click('#tree span[data-path="index.html"]');
      await page.click('#status button[data-location="src/boom.js:4:9"]');
      expect(await cursor()).toEqual({ path: 'src/boom.js', line: 4, column: 9 });
      await shot(page, '7-jumped-to-error');
      // Playwright's pageerror includes the frame's: only the app's own error, none of the editor's.
      expect(errors).toEqual(['boom on line 4']);
    } finally {
      await chrome.close();
    }
  });

  it('the buttons: suspend, resume, export (no database: the error is shown), stop', async () => {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`http://127.0.0.1:${port}/#token=${h.alice.jwt}`);
      await page.waitForSelector('#template option[value="vite-vanilla"]', { state: 'attached' });
      await page.selectOption('#template', 'vite-vanilla');
      await page.click('#create');
      const status = (re: RegExp) =>
        page.waitForFunction(
          (src) => new RegExp(src).test(document.getElementById('status')!.textContent!),
          re.source,
        );
      await status(/state: ready on docker/);
      const id = await page.evaluate(
        () => (window as unknown as { editorPage: { preview: { id: string } } }).editorPage.preview.id,
      );
      expect(await page.isDisabled('#move')).toBe(true); // already on a server tier
      // The frame shows the app, not the router's status page (which reloads itself on the
      // preview's events: a reload is a page view, and a page view wakes a suspended preview).
      await expect
        .poll(() => page.frameLocator('#preview iframe').locator('meta[name="preview-status"]').count(), {
          timeout: 20_000,
        })
        .toBe(0);
      await page.click('#suspend');
      await status(/state: suspended/);
      expect((await h.router.store.get(id))?.state).toBe('suspended');
      expect(tier.suspended(id)).toBe(true);
      await page.click('#resume');
      await status(/state: (starting|ready)/);
      await expect.poll(async () => (await h.router.store.get(id))?.state, { timeout: 20_000 }).toBe('ready');
      await page.click('#export');
      await status(/error: export database: .*database/);
      await page.click('#stop');
      await status(/state: ended/);
      expect((await h.router.store.get(id))?.state).toBe('ended');
      expect(await page.isDisabled('#stop')).toBe(true);
      await shot(page, '5-stopped');
    } finally {
      await chrome.close();
    }
  });

  it('a saved project that is not there (another user’s, or gone) is forgotten, saying so', async () => {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`http://127.0.0.1:${port}/#token=${h.bob.jwt}`);
      // This first load has read localStorage (it does once the templates are in) before the project is put there.
      await page.waitForSelector('#template option', { state: 'attached' });
      const gone = { previewId: randomUUID(), projectId: 'p-gone', template: 'vite-vanilla' };
      await page.evaluate((v) => localStorage.setItem('preview.project', v), JSON.stringify(gone));
      await page.reload();
      await page.waitForFunction(() =>
        /not there any more/.test(document.getElementById('status')!.textContent!),
      );
      expect(await page.evaluate(() => localStorage.getItem('preview.project'))).toBeNull();
      // The token came from the link once and is kept, not left in the address bar.
      expect(new URL(page.url()).hash).toBe('');
      expect(await page.inputValue('#token')).toBe(h.bob.jwt);
    } finally {
      await chrome.close();
    }
  });
});
