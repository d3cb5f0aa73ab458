/**
 * `npm run bench -- e2e [--edits N]`: in Chromium, a keystroke in the editor → the change painted in
 * the preview iframe, through the router; beside raw Vite with its own client, in the same run.
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
 *   `raw_hmr_to_paint_p50_ms` split each path at its socket messages (see the result).
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
import { percentile, round1 } from './stats.ts';

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const templateDir = join(import.meta.dirname, '../../templates/vite-react');
const WARMUP = 5;
/** Longer than the editor's typing pause (150 ms): every keystroke is sent at once. */
const QUIET_MS = 250;

/**
 * Installs the paint probe in a frame: on each DOM change, the text of `[data-testid="title"]` and
 * the epoch time of the next animation frame go into `window.__paints`.
 */
async function probe(frame: Frame): Promise<void> {
  await frame.evaluate(() => {
    const w = window as unknown as { __paints: Array<{ text: string; at: number }> };
    w.__paints = [];
    new MutationObserver(() => {
      const text = document.querySelector('[data-testid="title"]')?.textContent ?? '';
      requestAnimationFrame(() => w.__paints.push({ text, at: performance.timeOrigin + performance.now() }));
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

/** Epoch ms when `text` was first painted in `frame` (polled), or NaN after `timeoutMs`. */
async function paintedAt(frame: Frame, text: string, timeoutMs = 5000): Promise<number> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const at = await frame.evaluate(
      (t) =>
        (window as unknown as { __paints: Array<{ text: string; at: number }> }).__paints.find(
          (p) => p.text === t,
        )?.at,
      text,
    );
    if (at !== undefined) return at;
    await sleep(5);
  }
  return Number.NaN;
}

/** Raw Vite: this process's Vite on a copy of the vite-react template, its page in Chromium. */
async function rawVite(
  page: Page,
  edits: number,
): Promise<{ out: number[]; toHmr: number[]; toPaint: number[] }> {
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
  try {
    await vite.listen();
    const addr = vite.httpServer?.address();
    if (!addr || typeof addr !== 'object') throw new Error('e2e bench: Vite did not listen');
    const port = addr.port;
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.locator('[data-testid="title"]').waitFor({ timeout: 60_000 });
    await probe(page.mainFrame());
    const out: number[] = [];
    const toHmr: number[] = [];
    const toPaint: number[] = [];
    let text = 'Vite React preview';
    for (let i = 1; i <= edits + WARMUP; i++) {
      text += String.fromCharCode(97 + (i % 26));
      await sleep(QUIET_MS);
      const t0 = performance.timeOrigin + performance.now();
      await writeFile(join(dir, 'src/App.jsx'), app.replace('Vite React preview', text));
      const at = await paintedAt(page.mainFrame(), text);
      if (i <= WARMUP || !Number.isFinite(at)) continue;
      out.push(at - t0);
      const hmr = await firstAfter(page.mainFrame(), '__wsIn', t0);
      if (Number.isFinite(hmr)) {
        toHmr.push(hmr - t0);
        toPaint.push(at - hmr);
      }
    }
    return { out, toHmr, toPaint };
  } finally {
    await vite.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The editor page through the router: keystrokes in CodeMirror, paints in the preview iframe. */
async function throughRouter(page: Page, port: number, token: string, edits: number) {
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
  const out: number[] = [];
  const status: number[] = [];
  const parts = { send: [] as number[], toHmr: [] as number[], toPaint: [] as number[] };
  let text = 'Vite React preview';
  let misses = 0;
  for (let i = 1; i <= edits + WARMUP; i++) {
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
    if (!Number.isFinite(at)) misses++;
    else if (i > WARMUP) {
      out.push(at - keyAt);
      const sent = await firstAfter(page.mainFrame(), '__wsOut', keyAt);
      const hmr = await firstAfter(frame, '__wsIn', keyAt);
      if (Number.isFinite(sent) && Number.isFinite(hmr)) {
        parts.send.push(sent - keyAt);
        parts.toHmr.push(hmr - sent);
        parts.toPaint.push(at - hmr);
      }
    }
    const ms = Number(await page.getAttribute('#status', 'data-update-ms'));
    if (i > WARMUP && Number.isFinite(ms)) status.push(ms);
  }
  return { out, status, misses, parts };
}

export default async function e2e(args: string[]): Promise<object> {
  const edits = flag(args, 'edits', 40);
  const chrome = await launchChromium();
  await chrome.context.addInitScript(SOCKET_PROBE);
  const h = await createHarness({
    tiers: ({ nodeDirectory }) => ({ browser: createBrowserTier(), docker: createDockerTier(nodeDirectory) }),
  });
  const node = await startDockerNode(h, { name: 'e2e', slots: 2, warmPool: 'vite-react=1', image: IMAGE });
  try {
    process.stderr.write('e2e bench: raw Vite…\n');
    const raw = await rawVite(await chrome.context.newPage(), edits);
    process.stderr.write(`e2e bench: raw Vite done (${raw.out.length} paints); through the router…\n`);
    const routed = await throughRouter(await chrome.context.newPage(), node.port, h.alice.jwt, edits);
    process.stderr.write(`e2e bench: router done (${routed.out.length} paints, ${routed.misses} misses)\n`);
    const p50 = percentile(routed.out, 50);
    const rawP50 = percentile(raw.out, 50);
    const p = (xs: number[]) => round1(percentile(xs, 50));
    return {
      edit_paint_p50_ms: round1(p50),
      edit_paint_p99_ms: round1(percentile(routed.out, 99)),
      raw_vite_paint_p50_ms: round1(rawP50),
      raw_vite_paint_p99_ms: round1(percentile(raw.out, 99)),
      overhead_p50_ms: round1(p50 - rawP50),
      // Breakdown (p50 of each part): keydown → batch sent on the sync socket (the editor page);
      // sent → Vite's `update` message in the frame (router, agent, daemon, Vite, proxy);
      // that message → painted (module fetched through the proxy, Fast Refresh). Raw Vite: written →
      // its `update` message → painted.
      editor_send_p50_ms: p(routed.parts.send),
      sent_to_hmr_p50_ms: p(routed.parts.toHmr),
      hmr_to_paint_p50_ms: p(routed.parts.toPaint),
      raw_write_to_hmr_p50_ms: p(raw.toHmr),
      raw_hmr_to_paint_p50_ms: p(raw.toPaint),
      status_edit_update_p50_ms: round1(percentile(routed.status, 50)),
      edits: routed.out.length,
      misses: routed.misses,
    };
  } finally {
    await chrome.close();
    await node.close();
    await h.close();
  }
}
