/**
 * Issue 15, the browser-tier path of the editor page: with a router that hosts the bundler runtime
 * (`bundler.<PREVIEW_DOMAIN>`, GET /v1/runtime-host) and a real docker node registered, a new user
 * picks React without forcing anything: the page offers the bundler, the router places the
 * frontend-only project on the browser tier, `mountPreview` runs it in a hidden frame of the
 * runtime origin and frames the app from there; no container is made for it (the node's containers,
 * by Docker label); an edit typed in CodeMirror shows; "Move to server tier" moves the same id to the
 * docker node with the edited files, and the next edit reaches the sandbox. Real npm packages through the router's
 * package cache (the registry through this machine's proxy), Chromium with partitioned storage as
 * Chrome ships it. Screenshots in test-results/editor-browser-tier/ (git-ignored).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { launchChromium, requirePrerequisites, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type DockerNode, HOST_CA, startDockerNode } from '../test/docker-node.ts';
import { createHarness, type Harness } from '../test/harness.ts';
import { bundlerAssetsFromRepo, ensureEditorBuild, once } from './editor-assets.ts';
import { pickRuntime } from './embedded-agent.ts';

const IMAGE = process.env['ROUTER_TEST_IMAGE'] ?? TEST_PREVIEW_IMAGE;
const hasImage = (await pickRuntime({ socketPath: '/var/run/docker.sock', image: IMAGE })) === 'docker';
const SHOTS = join(import.meta.dirname, '../../test-results/editor-browser-tier');

describe('the editor page on the browser tier (bundler on the runtime origin; a docker node standing by)', () => {
  let h: Harness;
  let node: DockerNode | undefined;
  let dir: string;
  const missing =
    !hasImage &&
    `the Docker engine with the preview image ${IMAGE}: run scripts/test-env.sh (it builds ${TEST_PREVIEW_IMAGE})`;
  beforeEach(() => requirePrerequisites(missing));

  beforeAll(async () => {
    if (missing) return;
    dir = await mkdtemp(join(tmpdir(), 'editor-browser-tier-'));
    await mkdir(SHOTS, { recursive: true });
    // The runtime's files as the router image ships them (BUNDLER_ASSETS_DIR).
    const assets = join(dir, 'bundler-assets');
    for (const [path, body] of await bundlerAssetsFromRepo()) {
      await mkdir(dirname(join(assets, path)), { recursive: true });
      await writeFile(join(assets, path), body);
    }
    const build = await ensureEditorBuild({ cacheDir: join(dir, 'editor-cache') });
    h = await createHarness({
      env: { BUNDLER_ASSETS_DIR: assets, NPM_CA_FILE: HOST_CA, PACKAGE_CACHE_DIR: join(dir, 'pkg-cache') },
      editor: once(async () => build),
      tiers: ({ nodeDirectory, browserPlacements }) => ({
        browser: createBrowserTier({ placements: browserPlacements }),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    // A docker node that could take the project (its warm vite-react sandboxes stand by, unclaimed).
    node = await startDockerNode(h, {
      name: 'browsertier',
      slots: 2,
      warmPool: 'vite-react=1',
      image: IMAGE,
    });
  }, 300_000);

  afterAll(async () => {
    await node?.close();
    await h?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('React renders on tier browser with no container; an edit in CodeMirror shows; "Move to server tier" moves it to the docker node', {
    timeout: 300_000,
  }, async () => {
    const chrome = await launchChromium({ partitionedStorage: true });
    try {
      const page = await chrome.context.newPage();
      await page.setViewportSize({ width: 1400, height: 850 });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${node!.port}/#token=${h.alice.jwt}`);
      await page.waitForSelector('#template option[value="vite-react"]', { state: 'attached' });
      expect(await page.isChecked('#server-only')).toBe(false);
      await page.selectOption('#template', 'vite-react');
      await page.click('#create');

      const frame = page.frameLocator('#preview iframe');
      const title = frame.locator('[data-testid="title"]');
      await title.filter({ hasText: 'Vite React preview' }).waitFor({ timeout: 180_000 });
      await page.waitForFunction(() =>
        /state: ready on browser/.test(document.getElementById('status')!.textContent!),
      );
      const id = await page.evaluate(
        () => (window as unknown as { editorPage: { preview: { id: string } } }).editorPage.preview.id,
      );
      expect((await h.router.store.get(id))?.tier).toBe('browser');
      // The app is framed from the runtime origin, not the editor's.
      const src = await page.getAttribute('#preview iframe', 'src');
      expect(new URL(src!).hostname).toBe('bundler.preview.localhost');
      expect(await page.getAttribute('#preview iframe', 'data-tier')).toBe('browser');
      await page.screenshot({ path: join(SHOTS, '1-react-on-browser-tier.png') });

      // No sandbox: no container of the node was claimed (its warm ones stand by), none carries this preview's label.
      const claimed = async () => (await node!.runtime.list()).filter((b) => b.previewId !== undefined);
      expect(await claimed()).toEqual([]);
      const labelled = await testDocker().listContainers({
        all: true,
        filters: { label: [`preview.session=${id}`] },
      });
      expect(labelled).toEqual([]);

      // An edit typed in CodeMirror: persisted by the router, applied to the runtime in the tab.
      expect(await page.textContent('#path')).toBe('src/App.jsx');
      const source = await page.evaluate(
        () =>
          (window as unknown as { editorPage: { files: Map<string, string> } }).editorPage.files.get(
            'src/App.jsx',
          )!,
      );
      const edited = source.replace('Vite React preview', 'Edited in the browser tier');
      await page.click('#cm .cm-content');
      await page.keyboard.press('ControlOrMeta+a');
      await page.keyboard.insertText(edited);
      await title.filter({ hasText: 'Edited in the browser tier' }).waitFor({ timeout: 60_000 });
      await expect
        .poll(async () => (await h.router.store.loadFiles(id))['src/App.jsx'], { timeout: 20_000 })
        .toBe(edited);
      await page.waitForFunction(() =>
        /last edit → update: \d+ ms \(browser\)/.test(document.getElementById('status')!.textContent!),
      );
      expect(await claimed()).toEqual([]);
      await page.screenshot({ path: join(SHOTS, '2-edited-on-browser-tier.png') });

      // "Move to server tier": the same id goes to the docker node with the files as they were
      // edited, the panel frames the sandbox's URL instead of the runtime origin, and edits typed
      // afterwards reach the sandbox.
      await page.click('#move');
      await page.waitForFunction(() =>
        /state: ready on docker/.test(document.getElementById('status')!.textContent!),
      );
      await expect
        .poll(() => page.getAttribute('#preview iframe', 'data-tier'), { timeout: 60_000 })
        .toBe('docker');
      expect((await h.router.store.get(id))?.tier).toBe('docker');
      const movedSrc = new URL((await page.getAttribute('#preview iframe', 'src'))!);
      expect(movedSrc.hostname).not.toBe('bundler.preview.localhost');
      await title.filter({ hasText: 'Edited in the browser tier' }).waitFor({ timeout: 120_000 });
      expect((await claimed()).map((b) => b.previewId)).toEqual([id]);
      // The editor still shows the project, and typing goes to the sandbox now.
      await page.click('#cm .cm-content');
      await page.keyboard.press('ControlOrMeta+a');
      await page.keyboard.insertText(
        edited.replace('Edited in the browser tier', 'Edited on the server tier'),
      );
      await title.filter({ hasText: 'Edited on the server tier' }).waitFor({ timeout: 60_000 });
      await expect
        .poll(async () => (await h.router.store.loadFiles(id))['src/App.jsx'], { timeout: 20_000 })
        .toContain('Edited on the server tier');
      expect(await page.isDisabled('#move')).toBe(true);
      await page.screenshot({ path: join(SHOTS, '3-moved-to-server-tier.png') });
      expect(errors).toEqual([]);
    } finally {
      await chrome.close();
    }
  });
});
