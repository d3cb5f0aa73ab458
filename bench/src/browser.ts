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
 * Also: the last warm run's phases (ms from the create call to each mount status), how many modules
 * it compiled (0: all from the compiled-module store), the worker's build time per edit (p50) and
 * how many edits were hot updates.
 */
import { startBundlerRouter } from '@preview/browser-runtime/testkit/bundler-router';
import { launchChromium, packCreateVite } from '@preview/testkit';
import type { ProjectFiles } from '@preview/tiers';
import type { Page } from 'playwright-core';
import { percentile, round1 } from './stats.ts';

type Editor = {
  connect(apiUrl: string, token: string): void;
  timeFirstRender(files: ProjectFiles, text: string): Promise<number>;
  timeEdit(path: string, content: string, text: string): Promise<number>;
  timeline(): Array<{ t: number; what: string; compiled?: number; buildMs?: number; kind?: string }>;
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

    const coldPage = await editor();
    const cold = await firstRender(coldPage);
    // One editor tab at a time, as a user has: an earlier tab's bundler would compete for the CPU.
    await coldPage.close();
    const warm: number[] = [];
    let page: Page | undefined;
    for (let i = 0; i < warmRuns; i++) {
      await page?.close();
      page = await editor();
      warm.push(await firstRender(page));
    }
    // Where the last warm first render spent its time: ms from the create call to each status.
    const warmLine = await (page as Page).evaluate(() => window.__editor.timeline());
    const t0 = warmLine.findLast((e) => e.what === 'create')?.t ?? 0;
    const phases: Record<string, number> = {};
    for (const e of warmLine.filter((x) => x.t >= t0 && x.what !== 'updated'))
      phases[e.what] = round1(e.t - t0);
    const mounted = warmLine.findLast((e) => e.what === 'mounted');
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
    const updates = (await (page as Page).evaluate(() => window.__editor.timeline())).filter(
      (e) => e.what === 'updated',
    );
    return {
      first_render_cold_ms: round1(cold),
      first_render_warm_ms: round1(percentile(warm, 50)),
      edit_render_p50_ms: round1(percentile(times, 50)),
      edit_render_p99_ms: round1(percentile(times, 99)),
      warm_runs_ms: warm.map(round1),
      warm_phases_ms: phases,
      warm_modules_compiled: mounted?.compiled ?? null,
      edit_worker_build_p50_ms: round1(
        percentile(
          updates.map((u) => u.buildMs ?? 0),
          50,
        ),
      ),
      edits_hot: updates.filter((u) => u.kind === 'hot').length,
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
