/**
 * Issue 15's new-user path in Chromium, on the real docker tier (a pool agent registered with the
 * router, the preview image's Vite) with per-project databases (db-isolation on the test Postgres):
 * a new user picks React and sees it render; edits the component in CodeMirror and sees the change
 * with the component's state kept (Fast Refresh); breaks the code and sees Vite's overlay; fixes it;
 * adds a file in a new folder; reloads the page and finds the project restored; then picks
 * Express + Postgres and sees its query's result. Screenshots go to test-results/editor-new-user/
 * (git-ignored), kept after the run.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium, requirePrerequisites, TEST_PREVIEW_IMAGE } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type DockerNode, startDockerNode } from '../test/docker-node.ts';
import { createHarness, type Harness } from '../test/harness.ts';
import { ensureEditorBuild, once } from './editor-assets.ts';
import { pickRuntime } from './embedded-agent.ts';

const IMAGE = process.env['ROUTER_TEST_IMAGE'] ?? TEST_PREVIEW_IMAGE;
const hasImage = (await pickRuntime({ socketPath: '/var/run/docker.sock', image: IMAGE })) === 'docker';
const SHOTS = join(import.meta.dirname, '../../test-results/editor-new-user');

describe(`the editor's new-user path in Chromium (docker tier, agent, ${IMAGE}, project databases)`, () => {
  let h: Harness;
  let node: DockerNode | undefined;
  let dir: string;
  const missing =
    !hasImage &&
    `the Docker engine with the preview image ${IMAGE}: run scripts/test-env.sh (it builds ${TEST_PREVIEW_IMAGE})`;
  beforeEach(() => requirePrerequisites(missing));

  beforeAll(async () => {
    if (missing) return;
    dir = await mkdtemp(join(tmpdir(), 'editor-new-user-'));
    await mkdir(SHOTS, { recursive: true });
    const build = await ensureEditorBuild({ cacheDir: join(dir, 'editor-cache') });
    h = await createHarness({
      databases: true,
      editor: once(async () => build),
      tiers: ({ nodeDirectory }) => ({
        browser: createBrowserTier(),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    node = await startDockerNode(h, { name: 'newuser', slots: 4, warmPool: 'vite-react=1', image: IMAGE });
  }, 300_000);

  afterAll(async () => {
    await node?.close();
    await h?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`) });
  const frame = (page: Page) => page.frameLocator('#preview iframe');
  const previewId = (page: Page) =>
    page.evaluate(
      () => (window as unknown as { editorPage: { preview?: { id: string } } }).editorPage.preview?.id,
    );
  const fileText = (page: Page, path: string) =>
    page.evaluate(
      (p) => (window as unknown as { editorPage: { files: Map<string, string> } }).editorPage.files.get(p)!,
      path,
    );
  async function typeInEditor(page: Page, text: string) {
    await page.click('#cm .cm-content');
    await page.keyboard.press('ControlOrMeta+a');
    await page.keyboard.insertText(text);
  }

  it('React: render, Fast Refresh keeping state, overlay on a break, fix, a file in a folder, reload restores; then Express + Postgres shows a query result', {
    timeout: 600_000,
  }, async () => {
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.setViewportSize({ width: 1400, height: 850 });
      await page.goto(`http://127.0.0.1:${node!.port}/#token=${h.alice.jwt}`);
      await page.waitForSelector('#template option[value="vite-react"]', { state: 'attached' });

      // 1. Picks React (no tier forced) and sees it render.
      await page.selectOption('#template', 'vite-react');
      await page.click('#create');
      const title = frame(page).locator('[data-testid="title"]');
      await title.filter({ hasText: 'Vite React preview' }).waitFor({ timeout: 180_000 });
      await page.waitForFunction(() =>
        /state: ready on docker/.test(document.getElementById('status')!.textContent!),
      );
      const id = await previewId(page);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      const counter = frame(page).locator('[data-testid="counter"]');
      await counter.click();
      await counter.click();
      await counter.filter({ hasText: 'count is 2' }).waitFor();
      await shot(page, '1-react-rendered');

      // 2. Edits the component: Fast Refresh shows it and keeps the count.
      expect(await page.textContent('#path')).toBe('src/App.jsx');
      const source = await fileText(page, 'src/App.jsx');
      const edited = source.replace('Vite React preview', 'Edited React preview');
      await typeInEditor(page, edited);
      await title.filter({ hasText: 'Edited React preview' }).waitFor({ timeout: 60_000 });
      expect(await counter.textContent()).toBe('count is 2');
      await page.waitForFunction(() => document.getElementById('status')!.dataset['updateMs'] !== '');
      await shot(page, '2-react-edited-state-kept');

      // 3. Breaks it: Vite's error overlay in the preview.
      await typeInEditor(page, edited.replace('</main>', '</main'));
      await frame(page).locator('vite-error-overlay').waitFor({ state: 'attached', timeout: 60_000 });
      await shot(page, '3-react-broken-overlay');

      // 4. Fixes it: the overlay goes, the app shows the fixed text.
      await typeInEditor(page, edited.replace('Edited React preview', 'Fixed React preview'));
      await title.filter({ hasText: 'Fixed React preview' }).waitFor({ timeout: 60_000 });
      await expect.poll(() => frame(page).locator('vite-error-overlay').count(), { timeout: 30_000 }).toBe(0);
      await shot(page, '4-react-fixed');

      // 5. A file in a new folder.
      page.once('dialog', (d) => void d.accept('src/components'));
      await page.click('#new-folder');
      await page.locator('#tree span[data-path="src/components"]').waitFor();
      page.once('dialog', (d) => void d.accept('src/components/Note.jsx'));
      await page.click('#new-file');
      expect(await page.textContent('#path')).toBe('src/components/Note.jsx');
      const note = 'export function Note() {\n  return <p>kept</p>;\n}\n';
      await typeInEditor(page, note);
      await expect
        .poll(async () => (await h.router.store.loadFiles(id!))['src/components/Note.jsx'], {
          timeout: 30_000,
        })
        .toBe(note);
      await shot(page, '5-file-in-folder');

      // 6. Reloads the page: the same project, its files and the preview come back.
      await page.reload();
      await page.locator('#tree span[data-path="src/components/Note.jsx"]').waitFor({ timeout: 60_000 });
      expect(await previewId(page)).toBe(id);
      await title.filter({ hasText: 'Fixed React preview' }).waitFor({ timeout: 120_000 });
      expect(await fileText(page, 'src/components/Note.jsx')).toBe(note);
      await shot(page, '6-reloaded-restored');

      // 7. Express + Postgres: its page runs a query on the project's own database.
      await page.selectOption('#template', 'express-pg');
      await page.click('#create');
      await frame(page)
        .locator('[data-testid="db"]')
        .filter({ hasText: /Database connected: \d+ visits/ })
        .waitFor({ timeout: 240_000 });
      await page.waitForFunction(() =>
        /state: ready on docker/.test(document.getElementById('status')!.textContent!),
      );
      expect(await previewId(page)).not.toBe(id);
      await shot(page, '7-express-postgres-query');
      console.log(`new-user path screenshots: ${SHOTS}`);
    } finally {
      await chrome.close();
    }
  });
});
