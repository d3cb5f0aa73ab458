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
 * The features playwright-core disables in every Chromium it launches (its `chromiumSwitches`),
 * less `ThirdPartyStoragePartitioning`, which Chrome ships on (since 115) and Playwright turns off
 * for its own tests. Chromium takes the last `--disable-features`, so this list replaces Playwright's.
 */
const PLAYWRIGHT_DISABLED_FEATURES_BUT_PARTITIONING = [
  'AvoidUnnecessaryBeforeUnloadCheckSync',
  'DestroyProfileOnBrowserClose',
  'HttpsUpgrades',
  'HttpsFirstBalancedModeAutoEnable',
  'LensOverlay',
  'MediaRouter',
  'PaintHolding',
  'AvoidCorsURLLoaderRestartOnRedirect',
  'TcpPortRandomizationWin',
  'OptimizationHints',
  'NetworkTimeServiceQuerying',
  'AimEnabled',
  'PreconnectToSearch',
];

/**
 * Debian's Chromium driven by playwright-core, with a fresh user-data-dir removed on close.
 *
 * @param options.partitionedStorage storage of third-party frames partitioned by the top-level site,
 *   as Chrome ships it: a cross-origin frame can then register a service worker (the bundler runtime
 *   on its own origin, RemoteBundlerRuntime). Playwright turns partitioning off, and unpartitioned
 *   third-party storage is blocked, so without this such a frame is refused its service worker.
 *   @default false (Playwright's default)
 * @example
 * const chrome = await launchChromium();
 * try { const page = await chrome.context.newPage(); ... } finally { await chrome.close(); }
 */
export async function launchChromium(
  options: { partitionedStorage?: boolean } = {},
): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const userDataDir = await mkdtemp(join(tmpdir(), 'preview-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    // playwright passes userDataDir as --user-data-dir itself
    args: options.partitionedStorage
      ? [...CHROMIUM_ARGS, `--disable-features=${PLAYWRIGHT_DISABLED_FEATURES_BUT_PARTITIONING.join(',')}`]
      : CHROMIUM_ARGS,
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
