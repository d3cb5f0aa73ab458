/**
 * `npm run bench -- browser [--edits N] [--warm-runs N]`: the browser tier's bundler in Chromium,
 * through a real router (browser tier only, its package cache on the npm registry, the bundler's
 * files on `bundler.preview.localhost`), with create-vite's react-ts template (`npm pack create-vite`):
 *
 * - `first_render_cold_ms`: a fresh Chromium profile (no service worker, no HTTP cache) and an empty
 *   package cache: the editor's create call until the frame shows "Count is 0";
 * - `first_render_warm_ms`: the median of `--warm-runs` (default 3) more previews of the same
 *   project in new editor tabs of that profile (service worker, HTTP cache and package cache warm);
 * - `edit_render_p50_ms` / `_p99_ms`: `--edits` (default 40) edits of `src/App.tsx` through the sync
 *   session, each from the write until the frame's text shows it (React Fast Refresh: no reload).
 *
 * Times are taken in the editor page (`performance.now()`, the frame polled every millisecond).
 */
import { startBundlerRouter } from '@preview/browser-runtime/testkit/bundler-router';
import { packCreateVite } from '@preview/browser-runtime/testkit/create-vite';
import { launchChromium } from '@preview/testkit';
import type { ProjectFiles } from '@preview/tiers';
import type { Page } from 'playwright-core';
import { percentile, round1 } from './stats.ts';

type Editor = {
  connect(apiUrl: string, token: string): void;
  timeFirstRender(files: ProjectFiles, text: string): Promise<number>;
  timeEdit(path: string, content: string, text: string): Promise<number>;
};
declare const window: { __editor: Editor };

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: must be a positive integer`);
  return v;
}

export default async function browser(args: string[]): Promise<Record<string, unknown>> {
  const edits = flag(args, '--edits', 40);
  const warmRuns = flag(args, '--warm-runs', 3);
  const createVite = packCreateVite();
  const r = await startBundlerRouter();
  const chrome = await launchChromium();
  const pages: Page[] = [];
  try {
    const files = createVite.template('react-ts');
    const app = files['src/App.tsx'] as string;
    if (!app.includes('Count is {count}'))
      throw new Error('create-vite react-ts: App.tsx has no "Count is {count}"');

    const editor = async () => {
      const page = await chrome.context.newPage();
      pages.push(page);
      await page.goto(`${r.runtimeOrigin}/__test/editor.html`);
      await page.waitForFunction(() => typeof window.__editor === 'object');
      await page.evaluate(
        ([api, token]) => window.__editor.connect(api as string, token as string),
        [r.apiUrl, r.jwt],
      );
      return page;
    };
    const firstRender = (page: Page) =>
      page.evaluate((f) => window.__editor.timeFirstRender(f, 'Count is 0'), files);

    const cold = await firstRender(await editor());
    const warm: number[] = [];
    let page: Page | undefined;
    for (let i = 0; i < warmRuns; i++) {
      page = await editor();
      warm.push(await firstRender(page));
    }
    const times: number[] = [];
    for (let i = 1; i <= edits; i++) {
      const content = app.replace('Count is {count}', `Edit ${i} count {count}`);
      times.push(
        await (page as Page).evaluate(
          ([c, t]) => window.__editor.timeEdit('src/App.tsx', c as string, t as string),
          [content, `Edit ${i} count 0`],
        ),
      );
    }
    return {
      first_render_cold_ms: round1(cold),
      first_render_warm_ms: round1(percentile(warm, 50)),
      edit_render_p50_ms: round1(percentile(times, 50)),
      edit_render_p99_ms: round1(percentile(times, 99)),
      warm_runs_ms: warm.map(round1),
      edits,
      template: 'create-vite react-ts',
    };
  } finally {
    for (const p of pages) await p.close().catch(() => {});
    await chrome.close();
    await r.close();
    createVite.remove();
  }
}
