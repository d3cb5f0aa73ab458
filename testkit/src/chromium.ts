import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

export const CHROMIUM_PATH = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

/** The flags this machine kind needs: headless, no sandbox (root), no background network. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Debian's Chromium driven by playwright-core, with a fresh user-data-dir removed on close.
 *
 * @example
 * const chrome = await launchChromium();
 * try { const page = await chrome.context.newPage(); ... } finally { await chrome.close(); }
 */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'preview-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS, // playwright passes userDataDir as --user-data-dir itself
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Loads `url` in a fresh tab of `context` and returns the page's body text once it contains
 * `waitFor` (or whatever it shows after a short wait, so a test can assert on what went wrong).
 */
export async function renderText(context: BrowserContext, url: string, waitFor: string): Promise<string> {
  const page = await context.newPage();
  try {
    await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
    await page
      .waitForFunction((t) => document.body?.innerText.includes(t), waitFor, { timeout: 5_000 })
      .catch(() => {});
    return await page.evaluate(() => document.body?.innerText ?? '');
  } finally {
    await page.close();
  }
}
