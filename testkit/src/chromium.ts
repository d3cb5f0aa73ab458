import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Frame } from 'playwright-core';

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
 * @param options.reloadOn the load failures (Chromium's `net::` error text) after which a frame is
 *   loaded again (see `reloadFramesOn`). @default ['net::ERR_NETWORK_CHANGED']
 * @example
 * const chrome = await launchChromium();
 * try { const page = await chrome.context.newPage(); ... } finally { await chrome.close(); }
 */
export async function launchChromium(
  options: { partitionedStorage?: boolean; reloadOn?: readonly string[] } = {},
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
  reloadFramesOn(context, options.reloadOn ?? ['net::ERR_NETWORK_CHANGED']);
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Loads of these kinds leave a frame blank or broken when they are lost. */
const FRAME_LOADS = new Set(['document', 'script', 'stylesheet']);
/** How many times one frame is loaded again after a lost load. */
export const FRAME_RELOADS = 3;

/**
 * Chromium aborts the requests in flight when it sees the host's network change
 * (`net::ERR_NETWORK_CHANGED`), which happens on a machine that starts and removes containers beside
 * it; a module script lost so leaves the app's page blank for good (its dev server's client is up
 * and waits). A page whose document, script or stylesheet failed with one of `errors` is loaded
 * again (said on stderr), at most {@link FRAME_RELOADS} times: what a person does when a page comes
 * up blank after their network changed. Frames inside a page are left alone, and so are other
 * failures (a refused connection, a reset): they are what tests look for.
 */
function reloadFramesOn(context: BrowserContext, errors: readonly string[]): void {
  const reloads = new WeakMap<Frame, number>();
  context.on('requestfailed', (req) => {
    const error = req.failure()?.errorText ?? '';
    if (!errors.includes(error) || !FRAME_LOADS.has(req.resourceType())) return;
    let frame: Frame;
    try {
      frame = req.frame(); // a service worker's request has none
    } catch {
      return;
    }
    // A page's own document only: a child frame may be a runtime its page drives (the bundler's
    // host frame), which a reload behind the page's back would break.
    if (frame.parentFrame() !== null) return;
    const n = reloads.get(frame) ?? 0;
    if (n >= FRAME_RELOADS || frame.isDetached()) return;
    reloads.set(frame, n + 1);
    const url = req.isNavigationRequest() ? req.url() : frame.url();
    process.stderr.write(`launchChromium: ${error} on ${req.url()}; loading ${url} again\n`);
    void frame.goto(url).catch(() => {});
  });
}

/**
 * Loads `url` in a fresh tab of `context` and returns the page's body text once it contains
 * `waitFor` (or whatever it shows after a short wait, so a test can assert on what went wrong).
 * Every step is bounded (opening the tab 15 s, loading 20 s, the text 5 s, closing 5 s), so a poll
 * of it always gets an answer or an error naming the step, never a call that does not return.
 * @throws Error naming the step that did not finish (`page.goto`'s TimeoutError for the load)
 */
export async function renderText(context: BrowserContext, url: string, waitFor: string): Promise<string> {
  const opening = context.newPage();
  const page = await bounded(opening, 15_000, `opening a tab for ${url}`).catch((e: Error) => {
    void opening.then((p) => p.close()).catch(() => {}); // the tab that opens late is closed
    throw e;
  });
  try {
    await page.goto(url, { waitUntil: 'load', timeout: 20_000 });
    await page
      .waitForFunction((t) => document.body?.innerText.includes(t), waitFor, { timeout: 5_000 })
      .catch(() => {});
    return await bounded(
      page.evaluate(() => document.body?.innerText ?? ''),
      5_000,
      `reading the text of ${url}`,
    );
  } finally {
    await bounded(page.close(), 5_000, 'closing the tab').catch(() => {});
  }
}

/** `p`, or an Error saying `what` did not finish once `ms` have passed. */
function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
