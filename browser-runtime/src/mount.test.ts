import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '@preview/testkit';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBrowserHost } from '../test/browser-host.ts';
import { REACT_PROJECT } from './runtimes/contract.case.test.ts';

/**
 * mountPreview in real Chromium. Requests that would leave this machine (StackBlitz's WebContainer
 * iframe) are aborted by the browser context, which is how the WebContainer boot fails here.
 */
const here = dirname(fileURLToPath(import.meta.url));
let host: Awaited<ReturnType<typeof startBrowserHost>>;
let chrome: Awaited<ReturnType<typeof launchChromium>>;
const offHost: string[] = [];

beforeAll(async () => {
  host = await startBrowserHost(
    { mount: join(here, '../test/mount-harness.ts') },
    {
      'server-preview.html':
        '<!doctype html><html><body><p id="srv">served by a server tier</p></body></html>',
    },
  );
  chrome = await launchChromium();
  await chrome.context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1') return route.continue();
    offHost.push(u.hostname);
    return route.abort('addressunreachable');
  });
}, 120_000);

afterAll(async () => {
  await chrome?.close();
  await host?.close();
});

async function page(): Promise<Page> {
  const p = await chrome.context.newPage();
  await p.goto(`${host.origin}/mount.html`);
  await p.waitForFunction(() => '__mount' in window);
  return p;
}

type Result = {
  ok: boolean;
  tier?: string;
  src?: string;
  sandbox?: string;
  referrerpolicy?: string;
  runtime?: string | null;
  fallbackReason?: string | null;
  message?: string;
};
const mount = (p: Page, session: unknown, opts: unknown) =>
  p.evaluate(
    ([s, o]) => (window as unknown as { __mount(s: unknown, o: unknown): Promise<Result> }).__mount(s, o),
    [session, opts] as const,
  );

const frameText = async (p: Page, selector: string) => {
  const frame = p.frameLocator('iframe[data-preview-id]');
  await frame.locator(selector).waitFor({ timeout: 30_000 });
  return frame.locator(selector).innerText();
};

describe('mountPreview (Chromium)', () => {
  it('server tier: a sandboxed iframe on the preview URL with its token', async () => {
    const p = await page();
    try {
      const url = `${host.origin}/server-preview.html?token=tok123`;
      const r = await mount(p, { id: 'p1', tier: 'docker', previewUrl: url, placement: null }, {});
      expect(r).toMatchObject({
        ok: true,
        tier: 'docker',
        src: url,
        runtime: null,
        referrerpolicy: 'no-referrer',
      });
      expect(r.sandbox?.split(' ')).toEqual(
        expect.arrayContaining(['allow-scripts', 'allow-same-origin', 'allow-forms']),
      );
      expect(r.sandbox).not.toMatch(/allow-top-navigation/);
      expect(await frameText(p, '#srv')).toBe('served by a server tier');
      expect(host.requests).toContain('/server-preview.html?token=tok123');
      expect(
        await p.evaluate(() => (window as unknown as { __unmount(): Promise<number> }).__unmount()),
      ).toBe(0);
    } finally {
      await p.close();
    }
  });

  it('a server session without a URL is an error, and leaves no iframe', async () => {
    const p = await page();
    try {
      const r = await mount(p, { id: 'p2', tier: 'fly', previewUrl: null }, {});
      expect(r).toMatchObject({ ok: false, message: expect.stringMatching(/no preview URL/) });
      expect(await p.locator('iframe[data-preview-id]').count()).toBe(0);
    } finally {
      await p.close();
    }
  });

  it('browser tier: runs the project in the tab with the bundler runtime', async () => {
    const p = await page();
    try {
      const r = await mount(
        p,
        {
          id: `m${Date.now().toString(36)}`,
          tier: 'browser',
          previewUrl: null,
          placement: { runtime: 'bundler' },
        },
        { files: REACT_PROJECT, vendor: host.importMap },
      );
      expect(r).toMatchObject({ ok: true, tier: 'browser', runtime: 'bundler' });
      expect(r.src).toContain('/__preview-bundler/');
      expect(await frameText(p, 'main.app')).toBe('react:contract:42');
    } finally {
      await p.close();
    }
  });

  it('browser tier with WebContainers that cannot boot here falls back to a server tier', async () => {
    const p = await page();
    try {
      const fallbackUrl = `${host.origin}/server-preview.html?token=fallback`;
      const r = await mount(
        p,
        { id: 'p4', tier: 'browser', previewUrl: null, placement: { runtime: 'webcontainer' } },
        { files: REACT_PROJECT, fallbackUrl, bootTimeoutMs: 5_000 },
      );
      expect(r).toMatchObject({ ok: true, tier: 'docker', src: fallbackUrl, runtime: null });
      expect(r.fallbackReason).toBeTruthy();
      const log = await p.evaluate(() => (window as unknown as { __log: string[] }).__log);
      expect(log).toEqual(
        expect.arrayContaining(['booting:webcontainer', 'requestServerTier:runtime_unavailable']),
      );
      expect(await frameText(p, '#srv')).toBe('served by a server tier');
    } finally {
      await p.close();
    }
  });

  it('without a fallback, RuntimeUnavailable reaches the caller', async () => {
    const p = await page();
    try {
      const r = await mount(
        p,
        { id: 'p5', tier: 'browser', previewUrl: null, placement: { runtime: 'webcontainer' } },
        { files: REACT_PROJECT, bootTimeoutMs: 2_000 },
      );
      expect(r).toMatchObject({ ok: false });
      expect(r.message).toMatch(/WebContainer/);
    } finally {
      await p.close();
    }
  });
});
