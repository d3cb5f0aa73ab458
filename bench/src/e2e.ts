/**
 * `npm run bench -- e2e [--edits N] [--trace]`: in Chromium, a keystroke in the editor → the change
 * painted in the preview iframe, through the router; beside raw Vite with its own client, in the
 * same run.
 *
 * - `edit_paint_p50_ms` / `edit_paint_p99_ms`: the editor page the router serves (React, CodeMirror,
 *   `usePreviewSession`) on a vite-react project on the docker tier (a real pool agent, the preview
 *   image's Vite): a key pressed inside the component's `<h1>` in CodeMirror → the editor's sync
 *   socket → router sync hub → agent → preview-daemon → file in the sandbox → Vite → HMR through the
 *   router's preview proxy → React Fast Refresh in the iframe → the new text painted. Measured from
 *   the `keydown` in the editor page to the first animation frame after a MutationObserver in the
 *   iframe saw the new text (both as epoch ms: `performance.timeOrigin + performance.now()`).
 * - `raw_vite_paint_p50_ms`: the same component edit with Vite in this process and its own client
 *   in a Chromium page on it: the file written → the new text painted, measured the same way.
 * - `overhead_p50_ms`: the first minus the second (the goal: within 10 ms); `editor_send_p50_ms`,
 *   `sent_to_hmr_p50_ms`, `hmr_to_paint_p50_ms` and the raw `raw_write_to_hmr_p50_ms`,
 *   `raw_hmr_to_paint_p50_ms` split each path at its socket messages; `module_fetch_p50_ms` /
 *   `module_to_paint_p50_ms` (and `raw_…`) split the last part at the end of the changed module's
 *   answer (resource timing): the fetch (proxy hops and Vite's transform), then evaluation, Fast
 *   Refresh and the next frame.
 *
 * The two paths take turns, one edit each, so that both see the same load on a shared machine; the
 * page under test is brought to the front first (a background tab gets no animation frames). A paint
 * is waited for with one call that the page answers from its own animation frame, not by polling it
 * (polling took CPU from the frame and from this process, which runs the router and the agent).
 * `--trace` prints each routed sample's hops in this process (router and agent: sync frames, HMR
 * `update` bytes, the module request in and out), in ms after the batch left the editor.
 *
 * Needs the Docker engine with the preview image (`PREVIEW_IMAGE`, default preview-base:dev),
 * Postgres on 127.0.0.1:5432 and /usr/bin/chromium. Each sample waits for the one before and the
 * editor's typing pause (150 ms) so that every keystroke starts a new burst.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startDockerNode } from '@preview/router/testkit/docker-node';
import { createHarness } from '@preview/router/testkit/harness';
import { launchChromium } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import type { Frame, Page } from 'playwright-core';
import { createServer as createVite } from 'vite';
import { IMAGE } from './_agent.ts';
import { type HopTrace, startHopTrace } from './_hop-trace.ts';
import { percentile, round1 } from './stats.ts';

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.timeOrigin + performance.now();
const templateDir = join(import.meta.dirname, '../../templates/vite-react');
const WARMUP = 5;
/** Longer than the editor's typing pause (150 ms): every keystroke is sent at once. */
const QUIET_MS = 250;

/** What the paint probe keeps in a frame's `window`. */
interface PaintProbe {
  __paints: Array<{ text: string; at: number }>;
  /** The one waiter of `paintedAt`, resolved from the probe's own animation frame callback. */
  __paintWait?: { text: string; resolve(at: number): void };
}

/**
 * Installs the paint probe in a frame: on each DOM change, the text of `[data-testid="title"]` and
 * the epoch time of the next animation frame go into `window.__paints` (and to the waiter).
 */
async function probe(frame: Frame): Promise<void> {
  await frame.evaluate(() => {
    // Room for every module fetch of the run (the default buffer holds 250 entries).
    performance.setResourceTimingBufferSize(100_000);
    const w = window as unknown as PaintProbe;
    w.__paints = [];
    new MutationObserver(() => {
      const text = document.querySelector('[data-testid="title"]')?.textContent ?? '';
      requestAnimationFrame(() => {
        const at = performance.timeOrigin + performance.now();
        w.__paints.push({ text, at });
        if (w.__paintWait?.text === text) w.__paintWait.resolve(at);
      });
    }).observe(document.documentElement, { subtree: true, childList: true, characterData: true });
  });
}

/**
 * Every page and frame of the context records, as epoch ms, the sync socket's batch sends
 * (`__wsOut`: the editor page) and Vite's HMR `update` messages (`__wsIn`: the preview frame), for
 * the breakdown of each sample.
 */
const SOCKET_PROBE = `(() => {
  const now = () => performance.timeOrigin + performance.now();
  const W = window.WebSocket;
  window.__wsIn = []; window.__wsOut = [];
  const send = W.prototype.send;
  W.prototype.send = function (d) {
    if (typeof d === 'string' && d.includes('"batch"')) window.__wsOut.push(now());
    return send.call(this, d);
  };
  window.WebSocket = new Proxy(W, { construct(t, a) {
    const ws = Reflect.construct(t, a);
    ws.addEventListener('message', (e) => {
      if (typeof e.data === 'string' && e.data.includes('"update"')) window.__wsIn.push(now());
    });
    return ws;
  } });
})();`;

/** The first time in `frame`'s `window[list]` at or after `after` (epoch ms), or NaN. */
const firstAfter = (frame: Frame, list: '__wsIn' | '__wsOut', after: number): Promise<number> =>
  frame.evaluate(
    ([l, a]) =>
      ((window as unknown as Record<string, number[]>)[l as string] ?? []).find((t) => t >= (a as number)) ??
      Number.NaN,
    [list, after] as const,
  );

/**
 * Epoch ms when `text` was first painted in `frame`, or NaN after `timeoutMs`: one call, answered by
 * the frame's probe when it paints the text.
 */
async function paintedAt(frame: Frame, text: string, timeoutMs = 5000): Promise<number> {
  // Source text, not a function: tsx names functions with a helper the page does not have.
  const at = await frame.evaluate<number | null>(`new Promise((resolve) => {
    const w = window, text = ${JSON.stringify(text)};
    const seen = w.__paints.find((p) => p.text === text);
    if (seen) return resolve(seen.at);
    const timer = setTimeout(() => resolve(null), ${timeoutMs});
    w.__paintWait = { text, resolve(at) { clearTimeout(timer); w.__paintWait = undefined; resolve(at); } };
  })`);
  return at ?? Number.NaN;
}

/** The changed module's fetch after `after` in `frame` (epoch ms: start, first byte, end), if any. */
const moduleFetch = (frame: Frame, after: number) =>
  frame.evaluate((a) => {
    const e = (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).find(
      (r) => r.name.includes('/src/App.jsx') && performance.timeOrigin + r.startTime >= a,
    );
    const o = performance.timeOrigin;
    return e && { start: o + e.startTime, first: o + e.responseStart, end: o + e.responseEnd };
  }, after);

/** One path's samples (ms): the total and its parts. */
class Samples {
  total: number[] = [];
  /** keydown → batch sent (the editor page; 0 for raw Vite). */
  send: number[] = [];
  /** sent (or written) → Vite's `update` message in the page. */
  toHmr: number[] = [];
  /** `update` message → painted. */
  toPaint: number[] = [];
  /** `update` message → the changed module's answer ended. */
  fetch: number[] = [];
  /** The module's answer ended → painted (evaluation, Fast Refresh, the next frame). */
  render: number[] = [];
  misses = 0;

  /** Records one edit that started at `t0` and was painted at `at` (epoch ms); returns its parts. */
  async add(frame: Frame, t0: number, at: number, sent: number): Promise<string> {
    this.total.push(at - t0);
    const hmr = await firstAfter(frame, '__wsIn', t0);
    if (!Number.isFinite(sent) || !Number.isFinite(hmr)) return '';
    this.send.push(sent - t0);
    this.toHmr.push(hmr - sent);
    this.toPaint.push(at - hmr);
    const f = await moduleFetch(frame, hmr);
    if (f) {
      this.fetch.push(f.end - hmr);
      this.render.push(at - f.end);
    }
    const ms = (x: number) => x.toFixed(1);
    return `total ${ms(at - t0)}: sent ${ms(sent - t0)}, update ${ms(hmr - t0)}${f ? `, module asked ${ms(f.start - t0)}, first byte ${ms(f.first - t0)}, end ${ms(f.end - t0)}` : ''}, painted ${ms(at - t0)}`;
  }
}

/** A path under test: `edit` makes and measures one edit (`warm`: not recorded). */
interface EditPath {
  samples: Samples;
  edit(i: number, warm: boolean): Promise<void>;
  close(): Promise<void>;
}

/** Raw Vite: this process's Vite on a copy of the vite-react template, its page in Chromium. */
async function rawVite(page: Page): Promise<EditPath> {
  // Inside the repo so that `react` and `vite` resolve from the workspace's node_modules.
  const dir = join(import.meta.dirname, '..', `.tmp-e2e-${randomBytes(4).toString('hex')}`);
  const app = await readFile(join(templateDir, 'src/App.jsx'), 'utf8');
  await mkdir(join(dir, 'src'), { recursive: true });
  for (const f of ['index.html', 'src/main.jsx'])
    await writeFile(join(dir, f), await readFile(join(templateDir, f)));
  await writeFile(join(dir, 'src/App.jsx'), app);
  const vite = await createVite({
    root: dir,
    logLevel: 'silent',
    configFile: false,
    plugins: [(await import('@vitejs/plugin-react')).default()],
    server: { port: 0, host: '127.0.0.1', strictPort: false },
  });
  const close = async () => {
    await vite.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await vite.listen();
    const addr = vite.httpServer?.address();
    if (!addr || typeof addr !== 'object') throw new Error('e2e bench: Vite did not listen');
    await page.goto(`http://127.0.0.1:${addr.port}/`);
    await page.locator('[data-testid="title"]').waitFor({ timeout: 60_000 });
    await probe(page.mainFrame());
  } catch (e) {
    await close();
    throw e;
  }
  const samples = new Samples();
  let text = 'Vite React preview';
  return {
    samples,
    close,
    async edit(i, warm) {
      // In front: a background tab gets no animation frames.
      await page.bringToFront();
      text += String.fromCharCode(97 + (i % 26));
      await sleep(QUIET_MS);
      const t0 = now();
      await writeFile(join(dir, 'src/App.jsx'), app.replace('Vite React preview', text));
      const at = await paintedAt(page.mainFrame(), text);
      if (!Number.isFinite(at)) samples.misses++;
      else if (!warm) await samples.add(page.mainFrame(), t0, at, t0);
    },
  };
}

/** The editor page through the router: keystrokes in CodeMirror, paints in the preview iframe. */
async function throughRouter(
  page: Page,
  port: number,
  token: string,
  trace: HopTrace | undefined,
): Promise<EditPath & { status: number[] }> {
  await page.goto(`http://127.0.0.1:${port}/#token=${token}`);
  await page.waitForSelector('#template option[value="vite-react"]', { state: 'attached', timeout: 120_000 });
  await page.selectOption('#template', 'vite-react');
  await page.click('#create');
  const title = page.frameLocator('#preview iframe').locator('[data-testid="title"]');
  await title.filter({ hasText: 'Vite React preview' }).waitFor({ timeout: 180_000 });
  const frame = page.frames().find((f) => f !== page.mainFrame() && /preview/.test(f.url()));
  if (!frame) throw new Error('e2e bench: no preview frame');
  await probe(frame);
  await page.evaluate(() => {
    const w = window as unknown as { __keyAt: number };
    document.addEventListener(
      'keydown',
      () => (w.__keyAt = performance.timeOrigin + performance.now()),
      true,
    );
  });
  const source = await page.evaluate(
    () =>
      (window as unknown as { editorPage: { files: Map<string, string> } }).editorPage.files.get(
        'src/App.jsx',
      )!,
  );
  const lines = source.split('\n');
  const line = lines.findIndex((l) => l.includes('Vite React preview')) + 1;
  const column = (lines[line - 1] ?? '').indexOf('</h1>') + 1;
  const samples = new Samples();
  const status: number[] = [];
  let text = 'Vite React preview';
  return {
    samples,
    status,
    close: async () => {},
    async edit(i, warm) {
      await page.bringToFront();
      const ch = String.fromCharCode(97 + (i % 26));
      // The cursor just before `</h1>`: each key lengthens the title by one letter.
      await page.evaluate(
        (at) =>
          (
            window as unknown as {
              editorPage: { openLocation(l: { file: string; line: number; column: number }): void };
            }
          ).editorPage.openLocation(at),
        { file: 'src/App.jsx', line, column: column + i - 1 },
      );
      await sleep(QUIET_MS);
      text += ch;
      await page.keyboard.press(ch);
      const at = await paintedAt(frame, text);
      const keyAt = await page.evaluate(() => (window as unknown as { __keyAt: number }).__keyAt);
      if (!Number.isFinite(at)) samples.misses++;
      else if (!warm) {
        const sent = await firstAfter(page.mainFrame(), '__wsOut', keyAt);
        const parts = await samples.add(frame, keyAt, at, sent);
        if (trace) process.stderr.write(`edit ${i}: ${parts}\n${trace.lines(keyAt, at, sent)}\n`);
      }
      const ms = Number(await page.getAttribute('#status', 'data-update-ms'));
      if (!warm && Number.isFinite(ms)) status.push(ms);
    },
  };
}

export default async function e2e(args: string[]): Promise<object> {
  const edits = flag(args, 'edits', 40);
  const trace = args.includes('--trace') ? startHopTrace(/\/src\/App\.jsx/) : undefined;
  const chrome = await launchChromium();
  await chrome.context.addInitScript(SOCKET_PROBE);
  const h = await createHarness({
    tiers: ({ nodeDirectory }) => ({ browser: createBrowserTier(), docker: createDockerTier(nodeDirectory) }),
  });
  const node = await startDockerNode(h, { name: 'e2e', slots: 2, warmPool: 'vite-react=1', image: IMAGE });
  let raw: EditPath | undefined;
  try {
    process.stderr.write('e2e bench: raw Vite and the editor page…\n');
    raw = await rawVite(await chrome.context.newPage());
    const routed = await throughRouter(await chrome.context.newPage(), node.port, h.alice.jwt, trace);
    // One edit of each path in turn: both see the same load.
    for (let i = 1; i <= edits + WARMUP; i++) {
      await raw.edit(i, i <= WARMUP);
      await routed.edit(i, i <= WARMUP);
    }
    const r = routed.samples;
    const v = raw.samples;
    process.stderr.write(`e2e bench: done (${r.total.length} paints, ${r.misses} misses)\n`);
    const p50 = percentile(r.total, 50);
    const rawP50 = percentile(v.total, 50);
    const p = (xs: number[]) => round1(percentile(xs, 50));
    return {
      edit_paint_p50_ms: round1(p50),
      edit_paint_p99_ms: round1(percentile(r.total, 99)),
      raw_vite_paint_p50_ms: round1(rawP50),
      raw_vite_paint_p99_ms: round1(percentile(v.total, 99)),
      overhead_p50_ms: round1(p50 - rawP50),
      // Breakdown (p50 of each part): keydown → batch sent on the sync socket (the editor page);
      // sent → Vite's `update` message in the frame (router, agent, daemon, Vite, proxy); that
      // message → painted, also split at the end of the changed module's answer: the fetch (through
      // the proxy; Vite's transform) and the rest (evaluation, Fast Refresh, the next frame). Raw
      // Vite: written → its `update` message → painted, split alike.
      editor_send_p50_ms: p(r.send),
      sent_to_hmr_p50_ms: p(r.toHmr),
      hmr_to_paint_p50_ms: p(r.toPaint),
      module_fetch_p50_ms: p(r.fetch),
      module_to_paint_p50_ms: p(r.render),
      raw_write_to_hmr_p50_ms: p(v.toHmr),
      raw_hmr_to_paint_p50_ms: p(v.toPaint),
      raw_module_fetch_p50_ms: p(v.fetch),
      raw_module_to_paint_p50_ms: p(v.render),
      status_edit_update_p50_ms: round1(percentile(routed.status, 50)),
      edits: r.total.length,
      misses: r.misses,
      raw_misses: v.misses,
    };
  } finally {
    trace?.stop();
    await raw?.close();
    await chrome.close();
    await node.close();
    await h.close();
  }
}
