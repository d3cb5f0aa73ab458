import { launchChromium, requirePrerequisites, TEST_PREVIEW_IMAGE } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type DockerNode, startDockerNode } from '../test/docker-node.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { pickRuntime } from './embedded-agent.ts';

// The image must hold the preview-daemon with installed templates (scripts/test-env.sh builds it).
const IMAGE = process.env['ROUTER_TEST_IMAGE'] ?? TEST_PREVIEW_IMAGE;
const hasImage = (await pickRuntime({ socketPath: '/var/run/docker.sock', image: IMAGE })) === 'docker';

const FILES = {
  'index.html':
    '<!doctype html><html lang="en"><body><h1 id="t">hello</h1><script type="module" src="/src/main.js"></script></body></html>',
  'src/main.js': "import './style.css';\ndocument.getElementById('t').dataset.booted = '1';\n",
  'src/style.css': 'h1 { color: rgb(255, 0, 0); }\n',
};

describe(`through the proxy, a real Vite client in Chromium gets HMR (docker tier, agent, ${IMAGE})`, () => {
  let h: Harness;
  let port: number;
  let node: DockerNode | undefined;

  const missing =
    !hasImage &&
    `the Docker engine with the preview image ${IMAGE}: run scripts/test-env.sh (it builds ${TEST_PREVIEW_IMAGE})`;
  // Each test fails naming what is missing (a failed beforeAll would count them as skipped).
  beforeEach(() => requirePrerequisites(missing));

  beforeAll(async () => {
    if (missing) return;
    h = await createHarness({
      tiers: ({ nodeDirectory }) => ({
        browser: createBrowserTier(),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    // The harness's placeholder node has no agent behind it: make it dead so placement picks the real one.
    node = await startDockerNode(h, {
      name: 'rt',
      slots: 4,
      warmPool: 'vite-vanilla=1',
      memoryMiB: 512,
      image: IMAGE,
    });
    port = node.port;
  }, 180_000);

  afterAll(async () => {
    await node?.close();
    await h?.close();
  });

  it('status page, then the app; a CSS edit arrives as an HMR update without a reload', async () => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: FILES, template: 'vite-vanilla', serverOnly: true }),
    });
    const p = (await res.json()) as {
      id: string;
      tier: string;
      previewUrl: string;
      reasons: unknown;
      error: string | null;
    };
    expect(p.tier, JSON.stringify(p)).toBe('docker');
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(p.previewUrl.replace('127.0.0.1', 'preview.localhost'));
      // Either the status page (then it reloads itself once ready) or the app already.
      await page
        .waitForFunction(() => document.getElementById('t')?.dataset['booted'] === '1', undefined, {
          timeout: 90_000,
        })
        .catch(async (e) => {
          const s = await h.router.store.get(p.id);
          throw new Error(
            `app did not boot: session ${s?.state} ${JSON.stringify(s?.placement)}; page ${page.url()}: ${(await page.content()).slice(0, 1500)}`,
            { cause: e },
          );
        });
      const color = () => page.evaluate(() => getComputedStyle(document.getElementById('t')!).color);
      expect(await color()).toBe('rgb(255, 0, 0)');
      await page.evaluate(() => {
        (window as unknown as { __noReload: boolean }).__noReload = true;
      });
      const put = await h.router.app.request(`/v1/previews/${p.id}/files`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
        body: JSON.stringify({
          type: 'batch',
          seq: 1,
          ops: [{ op: 'put', path: 'src/style.css', content: 'h1 { color: rgb(0, 0, 255); }\n' }],
        }),
      });
      expect(put.status).toBe(200);
      await page.waitForFunction(
        () => getComputedStyle(document.getElementById('t')!).color === 'rgb(0, 0, 255)',
        undefined,
        {
          timeout: 30_000,
        },
      );
      // Same document: the update was hot, not a reload.
      expect(await page.evaluate(() => (window as unknown as { __noReload?: boolean }).__noReload)).toBe(
        true,
      );
    } finally {
      await chrome.close();
    }
  }, 180_000);

  it('the editor page creates a preview in a cross-site iframe (partitioned cookie); a typed edit arrives by HMR', async () => {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`http://127.0.0.1:${port}/#token=${h.alice.jwt}`);
      await page.waitForSelector('#template option[value="vite-vanilla"]', { state: 'attached' });
      await page.selectOption('#template', 'vite-vanilla');
      // This router's browser tier has no runtime assets: ask for the server tier.
      await page.check('#server-only');
      await page.click('#create');
      const frame = page.frameLocator('#preview iframe');
      await frame.locator('h1').filter({ hasText: 'Vite vanilla preview' }).waitFor({ timeout: 90_000 });
      const list = await h.router.app.request('/v1/previews?limit=1', { headers: bearer(h.alice.jwt) });
      const [newest] = ((await list.json()) as { previews: Array<{ tier: string; state: string }> }).previews;
      expect(newest).toMatchObject({ tier: 'docker', state: 'ready' });
      // Typed in CodeMirror → sync socket → sandbox → Vite HMR in the frame; the status bar shows the time.
      await page.click('#tree span[data-path="src/message.js"]');
      await page.click('#cm .cm-content');
      await page.keyboard.press('ControlOrMeta+a');
      await page.keyboard.insertText("export const message = 'typed in the editor';\n");
      await frame.locator('[data-testid="message"]').filter({ hasText: 'typed in the editor' }).waitFor({
        timeout: 30_000,
      });
      await page.waitForFunction(
        () => document.getElementById('status')!.dataset['updateMs'] !== '',
        undefined,
        {
          timeout: 30_000,
        },
      );
      expect(await page.textContent('#status')).toMatch(/last edit → update: \d+ ms/);
    } finally {
      await chrome.close();
    }
  }, 180_000);

  it('the editor page with React: an edit to the component arrives by Fast Refresh with its state kept', async () => {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`http://127.0.0.1:${port}/#token=${h.alice.jwt}`);
      await page.waitForSelector('#template option[value="vite-react"]', { state: 'attached' });
      await page.selectOption('#template', 'vite-react');
      await page.check('#server-only');
      await page.click('#create');
      const frame = page.frameLocator('#preview iframe');
      await frame.locator('[data-testid="title"]').filter({ hasText: 'Vite React preview' }).waitFor({
        timeout: 120_000,
      });
      await frame.locator('[data-testid="counter"]').click();
      await frame.locator('[data-testid="counter"]').click();
      await frame.locator('[data-testid="counter"]').filter({ hasText: 'count is 2' }).waitFor();
      // The page opened the component; type the whole file with the title changed.
      expect(await page.textContent('#path')).toBe('src/App.jsx');
      const source = await page.evaluate(
        () =>
          (window as unknown as { editorPage: { files: Map<string, string> } }).editorPage.files.get(
            'src/App.jsx',
          )!,
      );
      await page.click('#cm .cm-content');
      await page.keyboard.press('ControlOrMeta+a');
      await page.keyboard.insertText(source.replace('Vite React preview', 'Edited React preview'));
      await frame.locator('[data-testid="title"]').filter({ hasText: 'Edited React preview' }).waitFor({
        timeout: 30_000,
      });
      // Fast Refresh kept the component's state: no reload.
      expect(await frame.locator('[data-testid="counter"]').textContent()).toBe('count is 2');
    } finally {
      await chrome.close();
    }
  }, 240_000);

  it('an editor on the sync WebSocket gets applied, hmr and persisted frames from the docker sandbox', async () => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: FILES, template: 'vite-vanilla', serverOnly: true }),
    });
    const p = (await res.json()) as { id: string; tier: string };
    expect(p.tier).toBe('docker');
    await h.router.previews.waitReady(p.id, 90_000);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/previews/${p.id}/sync`, {
      headers: { authorization: `Bearer ${h.alice.jwt}` },
    });
    const frames: Array<{ type: string; seq?: number; stage?: string }> = [];
    ws.on('message', (m) => frames.push(JSON.parse(m.toString())));
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    try {
      ws.send(JSON.stringify({ type: 'hello', lastAckedSeq: 0, clientId: 'e2e' }));
      ws.send(
        JSON.stringify({
          type: 'batch',
          seq: 1,
          ops: [{ op: 'put', path: 'src/style.css', content: 'h1 { color: rgb(0, 128, 0); }\n' }],
        }),
      );
      const has = (f: (x: (typeof frames)[number]) => boolean) => frames.some(f);
      for (
        let i = 0;
        i < 600 && !(has((f) => f.type === 'ack' && f.stage === 'persisted') && has((f) => f.type === 'hmr'));
        i++
      )
        await new Promise((r) => setTimeout(r, 50));
      expect(frames).toContainEqual(expect.objectContaining({ type: 'ack', seq: 1, stage: 'applied' }));
      expect(frames).toContainEqual(expect.objectContaining({ type: 'ack', seq: 1, stage: 'persisted' }));
      expect(frames).toContainEqual(expect.objectContaining({ type: 'hmr', seq: 1 }));
      expect((await h.router.store.loadFiles(p.id))['src/style.css']).toBe('h1 { color: rgb(0, 128, 0); }\n');
      // The sandbox's edit → update time went into the histogram the dashboard shows.
      const hist = (await h.router.metrics.editUpdate.get()).values;
      expect(
        hist.find((v) => v.metricName === 'preview_edit_update_seconds_count')?.value,
      ).toBeGreaterThanOrEqual(1);
    } finally {
      ws.close();
    }
  }, 180_000);
});
