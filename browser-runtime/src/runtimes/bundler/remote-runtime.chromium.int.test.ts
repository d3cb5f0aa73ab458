/**
 * Issue 13, "the router hosts the runtime ... from a preview origin separate from the editor's (the
 * bundled app must not reach the editor's storage)": an editor page on the router's own origin
 * mounts a browser-tier preview; the bundler runs in a hidden frame of the runtime origin
 * (`bundler.<PREVIEW_DOMAIN>`, RemoteBundlerRuntime), the preview frame is on that origin, the app
 * cannot read what the editor keeps in its storage, and edits through the sync session still show;
 * a syntax error shows the overlay in the frame and reaches the editor as BuildFailedError with its
 * location.
 * Real router, real Postgres, real npm packages through the router's package cache, Chromium.
 */
import { launchChromium } from '@preview/testkit';
import type { ProjectFiles } from '@preview/tiers';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BundlerRouter, startBundlerRouter } from '../../../test/bundler-router.ts';

type Editor = {
  connect(apiUrl: string, token: string): void;
  create(files: ProjectFiles): Promise<{ id: string; tier: string | null; iframeTier?: string }>;
  write(files: Record<string, string>): Promise<void>;
  statuses(): string[];
  runtimeErrors(): Array<{ name: string; message: string; file?: string; line?: number; column?: number }>;
  shown(): { tier: string; reason: string; id: string; sessionTier: string | null; src: string } | null;
  unmount(): Promise<string[]>;
};
declare const window: { __editor: Editor };

let r: BundlerRouter;
let chrome: Awaited<ReturnType<typeof launchChromium>>;

beforeAll(async () => {
  r = await startBundlerRouter();
  // As Chrome ships: a third-party frame's storage is partitioned, so it may have a service worker.
  chrome = await launchChromium({ partitionedStorage: true });
}, 180_000);
afterAll(async () => {
  await chrome?.close();
  await r?.close();
});

/** The app: it shows what it can see of the editor's storage, and a dependency from the package cache. */
const APP: ProjectFiles = {
  'package.json': JSON.stringify({ name: 'probe', private: true, dependencies: { ms: '^2.1.3' } }),
  'index.html':
    '<!doctype html><html><body><div id="app"></div><script type="module" src="/src/main.js"></script></body></html>',
  'src/main.js': [
    "import ms from 'ms';",
    "const seen = localStorage.getItem('editor-token');",
    "document.querySelector('#app').textContent = 'origin ' + location.origin + ' token ' + seen + ' cookie [' + document.cookie + '] ' + ms(60000);",
  ].join('\n'),
};

async function openEditorOnApiOrigin(): Promise<{ page: Page; logs: string[] }> {
  const page = await chrome.context.newPage();
  const logs: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') logs.push(m.text().slice(0, 300));
  });
  page.on('pageerror', (e) => logs.push(e.message.slice(0, 300)));
  await page.goto(`${r.apiUrl}/__test/editor.html`);
  await page.waitForFunction(() => typeof window.__editor === 'object');
  // What an editor keeps: its API token in localStorage, a session cookie.
  await page.evaluate(() => localStorage.setItem('editor-token', 'SECRET-TOKEN'));
  await chrome.context.addCookies([{ name: 'editor_session', value: 'SECRET-COOKIE', url: r.apiUrl }]);
  await page.evaluate(
    ([api, token]) => window.__editor.connect(api as string, token as string),
    [r.apiUrl, r.jwt],
  );
  return { page, logs };
}

describe('the bundler runs on the runtime origin, not the editor’s', () => {
  it('an editor on the router origin: the app is framed from bundler.<domain> and cannot read the editor’s storage', async () => {
    const { page, logs } = await openEditorOnApiOrigin();
    const runtimeOrigin = r.runtimeOrigin;
    const created = await page
      .evaluate((f) => window.__editor.create(f), APP)
      .catch(async (e: Error) => {
        const statuses = await page.evaluate(() => window.__editor.statuses());
        throw new Error(`${e.message} | ${statuses.join(' | ')} | console: ${logs.join(' | ')}`);
      });
    expect(created.tier, JSON.stringify(created)).toBe('browser');
    expect(created.iframeTier).toBe('browser');
    const shown = await page.evaluate(() => window.__editor.shown());
    expect(new URL(shown!.src).origin).toBe(runtimeOrigin);
    expect(new URL(shown!.src).origin).not.toBe(new URL(r.apiUrl).origin);

    const frame = page.frameLocator('#host iframe');
    const app = frame.locator('#app');
    try {
      await app.getByText('token null', { exact: false }).waitFor({ timeout: 90_000 });
    } catch (e) {
      const statuses = await page.evaluate(() => window.__editor.statuses());
      throw new Error(`the app never rendered: ${statuses.join(' | ')} | console: ${logs.join(' | ')}`, {
        cause: e,
      });
    }
    const text = await app.innerText();
    expect(text).toContain(`origin ${runtimeOrigin}`);
    expect(text).toContain('1m');
    expect(text).not.toContain('SECRET');

    // An edit through the sync session reaches the runtime on the other origin and shows.
    await page.evaluate(
      (main) => window.__editor.write({ 'src/main.js': main }),
      `${APP['src/main.js'] as string}\ndocument.querySelector('#app').append(' edited-remote');`,
    );
    await app.getByText('edited-remote', { exact: false }).waitFor({ timeout: 60_000 });

    // A syntax error: the overlay in the frame (on the runtime origin), and the editor gets the
    // runtime's BuildFailedError with file, line and column across the port; the fix clears it.
    await page.evaluate(
      (main) => window.__editor.write({ 'src/main.js': main }),
      `${APP['src/main.js'] as string}\nconst broken = (;\n`,
    );
    const overlay = frame.locator('[data-preview-overlay]');
    await overlay.waitFor({ timeout: 60_000 });
    expect(await overlay.locator('[data-location]').first().innerText()).toMatch(/^src\/main\.js:4:\d+$/);
    const err = (await page.evaluate(() => window.__editor.runtimeErrors())).at(-1);
    expect(err).toMatchObject({ name: 'BuildFailedError', file: 'src/main.js', line: 4 });
    await page.evaluate(
      (main) => window.__editor.write({ 'src/main.js': main }),
      `${APP['src/main.js'] as string}\ndocument.querySelector('#app').append(' fixed-remote');`,
    );
    await app.getByText('fixed-remote', { exact: false }).waitFor({ timeout: 60_000 });
    await overlay.waitFor({ state: 'detached', timeout: 60_000 });
    // The runtime's host frame is the runtime origin's host.html, hidden.
    const hosts = await page.evaluate(() =>
      [...document.querySelectorAll('iframe')].map((f) => ({
        src: f.src,
        hidden: f.style.display === 'none',
      })),
    );
    expect(hosts).toContainEqual({ src: `${runtimeOrigin}/host.html`, hidden: true });

    // A host that never answers the teardown (here its cache never deletes) does not hang it: the
    // host frame goes after the runtime's teardown timeout.
    const hostFrame = page.frames().find((f) => f.url() === `${runtimeOrigin}/host.html`);
    await hostFrame!.evaluate(() => {
      CacheStorage.prototype.delete = () => new Promise<boolean>(() => {});
    });
    expect(await page.evaluate(() => window.__editor.unmount())).toEqual([]);
    await page.close();
  });
});
