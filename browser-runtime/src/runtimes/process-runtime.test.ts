import { launchChromium } from '@preview/testkit';
import { afterAll, beforeAll } from 'vitest';
import { runRuntimeContract } from './contract.case.test.ts';
import { ProcessRuntime } from './process-runtime.ts';

let chrome: Awaited<ReturnType<typeof launchChromium>>;
beforeAll(async () => {
  chrome = await launchChromium();
});
afterAll(async () => {
  await chrome?.close();
});

/** Loads the URL in a fresh tab of real Chromium and returns the body text once it has `waitFor`. */
async function render(url: string, waitFor: string): Promise<string> {
  const page = await chrome.context.newPage();
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

runRuntimeContract({
  name: 'process (Vite in a child process, rendered in Chromium)',
  create: async () => ({ runtime: new ProcessRuntime(), render }),
});
