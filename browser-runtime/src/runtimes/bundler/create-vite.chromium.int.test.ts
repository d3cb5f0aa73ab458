/**
 * Issue 13, "must show", on the bundler runtime: create-vite's vanilla-ts, react-ts, vue-ts and
 * svelte-ts templates (Vue single-file components compiled in the worker by @vue/compiler-sfc,
 * Svelte ones by svelte/compiler; svelte is one of the template's devDependencies, which the import
 * map holds because the code imports it)
 * (fetched with `npm pack create-vite` at test time, never committed) run on the browser tier in
 * Chromium through a real router that has no server tier at all. Every bare import resolves through
 * the router: the preview's import map (`GET /v1/previews/:id/importmap`, from its package.json)
 * points at the package cache (`/__pkg/...`, fetched from the real npm registry). A dependency added
 * by an edit of package.json (`ms`) and imported by an edited module shows in the frame; after a
 * reload the editor restores the files from the router and the edit is still there.
 *
 * React-TS also: the counter's state survives an edit of App.tsx (React Fast Refresh, no reload),
 * and a syntax error shows the error overlay in the frame (file, line, column) until the fix clears it.
 *
 * A dependency the package cache refuses (`graceful-fs` imports Node's `fs`), at start or added by an
 * edit, makes the runtime report RuntimeUnavailable naming it, and mountPreview shows the preview on
 * the server tier under the same id (the router's `docker` here is router/test/local-tier.ts).
 */
import { launchChromium, packCreateVite } from '@preview/testkit';
import type { ProjectFiles } from '@preview/tiers';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BundlerRouter, startBundlerRouter } from '../../../test/bundler-router.ts';

type Editor = {
  connect(apiUrl: string, token: string): void;
  create(files: ProjectFiles): Promise<{ id: string; tier: string | null; iframeTier?: string }>;
  restore(id: string): Promise<{ files: ProjectFiles; tier: string | null; iframeTier: string }>;
  write(files: Record<string, string>): Promise<void>;
  tier(id: string): Promise<string | null>;
  statuses(): string[];
  shown(): { tier: string; reason: string; id: string; sessionTier: string | null; src: string } | null;
};
declare const window: { __editor: Editor };

let r: BundlerRouter;
let chrome: Awaited<ReturnType<typeof launchChromium>>;
let createVite: ReturnType<typeof packCreateVite>;
/** Errors and warnings each page (and its frames) logged, for the failure message. */
const consoleOf = new WeakMap<Page, string[]>();

/** create-vite's `template-<name>` as a project's files. */
const scaffold = (name: string): ProjectFiles => createVite.template(name);

beforeAll(async () => {
  createVite = packCreateVite();
  r = await startBundlerRouter();
  chrome = await launchChromium();
}, 180_000);

afterAll(async () => {
  await chrome?.close();
  await r?.close();
  createVite?.remove();
});

async function openEditor(router: BundlerRouter = r): Promise<Page> {
  const page = await chrome.context.newPage();
  const logs: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') logs.push(m.text().slice(0, 300));
  });
  page.on('pageerror', (e) => logs.push(e.message.slice(0, 300)));
  consoleOf.set(page, logs);
  await page.goto(`${router.runtimeOrigin}/__test/editor.html`);
  await page.waitForFunction(() => typeof window.__editor === 'object');
  await page.evaluate(
    ([api, token]) => window.__editor.connect(api as string, token as string),
    [router.apiUrl, router.jwt],
  );
  return page;
}

/** Waits until the preview frame shows `text`; on a miss, says what the frame and the editor saw. */
async function frameShows(page: Page, text: string): Promise<void> {
  const frame = page.frameLocator('#host iframe');
  try {
    await frame.getByText(text, { exact: false }).first().waitFor({ timeout: 90_000 });
  } catch (e) {
    const body = await frame
      .locator('body')
      .innerText({ timeout: 1000 })
      .catch(() => '(no frame body)');
    const statuses = await page.evaluate(() => window.__editor.statuses());
    throw new Error(
      `frame never showed ${JSON.stringify(text)}: ${body.slice(0, 400)} | ${statuses.join(' | ')} | console: ${(consoleOf.get(page) ?? []).join(' | ')}`,
      {
        cause: e,
      },
    );
  }
}

/**
 * React-TS only, before the dependency edit: React Fast Refresh keeps the counter's state across an
 * edit of App.tsx (no reload); a syntax error shows the error overlay in the frame with its file,
 * line and column, the app's state kept under it; the fix clears it.
 */
async function reactStateAndOverlay(page: Page, files: ProjectFiles): Promise<void> {
  const frame = page.frameLocator('#host iframe');
  const app = files['src/App.tsx'] as string;
  await frame.getByRole('button', { name: 'Count is 0' }).click();
  await frame.getByRole('button', { name: 'Count is 1' }).click();
  await frameShows(page, 'Count is 2');
  await page.evaluate((w) => window.__editor.write(w), {
    'src/App.tsx': app.replace('Count is {count}', 'Clicked {count} times'),
  });
  await frameShows(page, 'Clicked 2 times');

  const lines = app.split('\n');
  const at = lines.findIndex((l) => l.includes('Count is {count}'));
  const broken = [...lines.slice(0, at), '          Count is {count', ...lines.slice(at + 1)].join('\n');
  await page.evaluate((w) => window.__editor.write(w), { 'src/App.tsx': broken });
  const overlay = frame.locator('[data-preview-overlay]');
  await overlay.waitFor({ timeout: 60_000 });
  expect(await overlay.locator('[data-location]').first().innerText()).toMatch(
    new RegExp(`^src/App\\.tsx:${at + 2}:\\d+$|^src/App\\.tsx:${at + 1}:\\d+$`),
  );
  expect(await overlay.locator('[data-message]').first().innerText()).not.toBe('');
  expect(await frame.getByRole('button').first().innerText()).toBe('Clicked 2 times');
  await page.evaluate((w) => window.__editor.write(w), { 'src/App.tsx': app });
  await overlay.waitFor({ state: 'detached', timeout: 60_000 });
  await frameShows(page, 'Count is 2');
}

const cases = [
  {
    template: 'vanilla-ts',
    shows: 'Get started',
    edit: (files: ProjectFiles) => ({
      'src/counter.ts': `import ms from 'ms'\n${files['src/counter.ts'] as string}`.replace(
        // The template's own source text: a template literal in counter.ts.
        'element.innerHTML = `Count is $' + '{counter}`',
        'element.innerHTML = `Edited count $' + '{counter} after $' + '{ms(60000)}`',
      ),
    }),
    edited: 'Edited count 0 after 1m',
  },
  {
    template: 'react-ts',
    shows: 'Count is 0',
    before: reactStateAndOverlay,
    edit: (files: ProjectFiles) => ({
      'src/App.tsx': `import ms from 'ms'\n${files['src/App.tsx'] as string}`.replace(
        'Count is {count}',
        'Edited count {count} after {ms(60000)}',
      ),
    }),
    edited: 'Edited count 0 after 1m',
  },
  {
    template: 'vue-ts',
    shows: 'Count is 0',
    edit: (files: ProjectFiles) => ({
      'src/components/HelloWorld.vue': (files['src/components/HelloWorld.vue'] as string)
        .replace("import { ref } from 'vue'", "import { ref } from 'vue'\nimport ms from 'ms'")
        .replace('Count is {{ count }}', 'Edited count {{ count }} after {{ ms(60000) }}'),
    }),
    edited: 'Edited count 0 after 1m',
  },
  {
    template: 'svelte-ts',
    shows: 'Count is 0',
    edit: (files: ProjectFiles) => ({
      'src/lib/Counter.svelte': (files['src/lib/Counter.svelte'] as string)
        .replace('<script lang="ts">', '<script lang="ts">\n  import ms from \'ms\'')
        .replace('Count is {count}', 'Edited count {count} after {ms(60000)}'),
    }),
    edited: 'Edited count 0 after 1m',
  },
];

describe('create-vite apps on the bundler runtime, packages through the router', () => {
  for (const c of cases) {
    it(`${c.template}: renders with no server tier${'before' in c ? ', state survives an edit, a syntax error shows the overlay and the fix clears it' : ''}, an edit adding a dependency shows, a reload restores it`, {
      timeout: 400_000,
    }, async () => {
      const files = scaffold(c.template);
      const edit = c.edit(files);
      expect(Object.values(edit)[0]).toContain('Edited count');
      const page = await openEditor();
      try {
        const created = await page.evaluate((f) => window.__editor.create(f), files);
        expect(created.tier).toBe('browser');
        expect(created.iframeTier).toBe('browser');
        await frameShows(page, c.shows);
        if ('before' in c && c.before) await c.before(page, files);

        const pkg = JSON.parse(files['package.json'] as string) as { dependencies?: Record<string, string> };
        pkg.dependencies = { ...pkg.dependencies, ms: '^2.1.3' };
        await page.evaluate((w) => window.__editor.write(w), {
          'package.json': JSON.stringify(pkg, null, 2),
          ...edit,
        });
        await frameShows(page, c.edited);
        expect(await page.evaluate((id) => window.__editor.tier(id), created.id)).toBe('browser');

        await page.reload();
        await page.waitForFunction(() => typeof window.__editor === 'object');
        await page.evaluate(
          ([api, token]) => window.__editor.connect(api as string, token as string),
          [r.apiUrl, r.jwt],
        );
        const restored = await page.evaluate((id) => window.__editor.restore(id), created.id);
        expect(restored.iframeTier).toBe('browser');
        expect(JSON.parse(restored.files['package.json'] as string).dependencies.ms).toBe('^2.1.3');
        expect(restored.files[Object.keys(edit)[0] as string]).toBe(Object.values(edit)[0]);
        await frameShows(page, c.edited);
      } finally {
        await page.close();
      }
    });
  }
});

describe('a dependency the package cache refuses: same-id fallback to the server tier', () => {
  let rs: BundlerRouter;
  beforeAll(async () => {
    rs = await startBundlerRouter({ serverTier: true });
  }, 120_000);
  afterAll(async () => {
    await rs?.close();
  });

  const waitForServerTier = async (page: Page) => {
    await page.waitForFunction(() => window.__editor.shown()?.tier === 'docker', undefined, {
      timeout: 120_000,
    });
    return await page.evaluate(() => window.__editor.shown());
  };

  it('added by an edit of package.json: the frame moves to docker under the same id, the reason names it', {
    timeout: 300_000,
  }, async () => {
    const files = scaffold('vanilla-ts');
    const page = await openEditor(rs);
    try {
      const created = await page.evaluate((f) => window.__editor.create(f), files);
      expect(created.iframeTier).toBe('browser');
      await frameShows(page, 'Get started');
      const pkg = JSON.parse(files['package.json'] as string) as { dependencies?: Record<string, string> };
      pkg.dependencies = { ...pkg.dependencies, 'graceful-fs': '^4.2.0' };
      await page.evaluate((w) => window.__editor.write(w), {
        'package.json': JSON.stringify(pkg, null, 2),
        'src/counter.ts': `import fs from 'graceful-fs'\nconsole.log(fs)\n${files['src/counter.ts'] as string}`,
      });
      const shown = await waitForServerTier(page);
      expect(shown?.id).toBe(created.id);
      expect(shown?.sessionTier).toBe('docker');
      expect(shown?.reason).toMatch(/graceful-fs@4\.\d+\.\d+/);
      expect(new URL(shown?.src ?? '').hostname).toBe(`${created.id}.preview.localhost`);
      expect(await page.evaluate((id) => window.__editor.tier(id), created.id)).toBe('docker');
    } finally {
      await page.close();
    }
  });

  it('in package.json from the start: mountPreview falls back before showing the browser frame', {
    timeout: 300_000,
  }, async () => {
    const files = scaffold('vanilla-ts');
    const pkg = JSON.parse(files['package.json'] as string) as { dependencies?: Record<string, string> };
    files['package.json'] = JSON.stringify({ ...pkg, dependencies: { 'graceful-fs': '^4.2.0' } });
    const page = await openEditor(rs);
    try {
      const created = await page.evaluate((f) => window.__editor.create(f), files);
      // Created on the browser tier (the fallback status below), shown on docker.
      expect(created.tier).toBe('docker');
      expect(created.iframeTier).toBe('docker');
      const shown = await page.evaluate(() => window.__editor.shown());
      expect(shown?.id).toBe(created.id);
      expect(shown?.reason).toMatch(
        /^a dependency cannot run in a browser: graceful-fs@4\.\d+\.\d+ imports the Node built-in/,
      );
      const statuses = await page.evaluate(() => window.__editor.statuses());
      expect(statuses.some((x) => x.startsWith('fallback: a dependency cannot run in a browser'))).toBe(true);
    } finally {
      await page.close();
    }
  });
});
