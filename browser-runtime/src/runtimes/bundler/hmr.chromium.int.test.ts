/**
 * Issue 13, the bundler's edit loop in real Chromium (offline vendor React, no router): React Fast
 * Refresh keeps a component's state across an edit of its module and the page is not reloaded; an
 * edit of a module that is not all components reloads the page; a CSS edit swaps the style in
 * place; a syntax error and an unresolvable import show the error overlay in the frame (file, line,
 * column, message, the source line), reach the embedding page as the runtime's BuildFailedError and
 * as a message from the frame, and the fix clears the overlay.
 */
import { launchChromium } from '@preview/testkit';
import type { ProjectFiles } from '@preview/tiers';
import type { Frame, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBrowserHost } from '../../../test/browser-host.ts';

type PageApi = {
  start(files: ProjectFiles): Promise<void>;
  write(path: string, content: string): Promise<void>;
  errors(): Array<{ name: string; message: string; file?: string; line?: number; column?: number }>;
  updates(): Array<{ build: number; kind: string; modules: string[] }>;
  messages(): Array<{ type: string; errors?: unknown[] }>;
};
declare const window: { __page: PageApi; __marker?: number };

let host: Awaited<ReturnType<typeof startBrowserHost>>;
let chrome: Awaited<ReturnType<typeof launchChromium>>;

beforeAll(async () => {
  host = await startBrowserHost({
    frame: new URL('../../../test/bundler-frame-page.ts', import.meta.url).pathname,
  });
  chrome = await launchChromium();
}, 120_000);
afterAll(async () => {
  await chrome?.close();
  await host?.close();
});

const APP = (title: string) => `import { useState } from 'react';
import { label } from './label';
import './app.css';

export default function App() {
  const [count, setCount] = useState(0);
  return (
    <main>
      <h1>${title}</h1>
      <p id="label">{label}</p>
      <button onClick={() => setCount((c) => c + 1)}>count is {count}</button>
    </main>
  );
}
`;

const FILES: ProjectFiles = {
  'index.html':
    '<!doctype html><html><head></head><body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body></html>',
  'src/main.tsx': `import { createRoot } from 'react-dom/client';
import App from './App';
createRoot(document.getElementById('root')!).render(<App />);
`,
  'src/App.tsx': APP('Hello v1'),
  'src/label.ts': "export const label: string = 'label one';\n",
  'src/app.css': 'h1 { color: rgb(255, 0, 0); }\n',
};

async function open(): Promise<{ page: Page; frame: () => Frame }> {
  const page = await chrome.context.newPage();
  await page.goto(`${host.origin}/frame.html`);
  await page.waitForFunction(() => typeof window.__page === 'object');
  await page.evaluate((f) => window.__page.start(f), FILES);
  const frame = () => {
    const f = page.frames().find((x) => x.url().includes('/__preview-bundler/'));
    if (!f) throw new Error('no preview frame');
    return f;
  };
  await page.frameLocator('#host iframe').getByText('count is 0').waitFor({ timeout: 30_000 });
  return { page, frame };
}

const write = (page: Page, path: string, content: string) =>
  page.evaluate(([p, c]) => window.__page.write(p as string, c as string), [path, content]);

describe('bundler edits in Chromium: React Fast Refresh, full reloads, the error overlay', () => {
  it('keeps component state across an edit of a component module, with no reload; CSS swaps in place; a non-component edit reloads', {
    timeout: 120_000,
  }, async () => {
    const { page, frame } = await open();
    try {
      const f = page.frameLocator('#host iframe');
      for (let i = 0; i < 3; i++) await f.getByRole('button').click();
      await f.getByText('count is 3').waitFor();
      await frame().evaluate(() => {
        window.__marker = 1;
      });

      await write(page, 'src/App.tsx', APP('Hello v2'));
      await f.getByText('Hello v2').waitFor({ timeout: 20_000 });
      expect(await f.getByRole('button').innerText()).toBe('count is 3');
      expect(await frame().evaluate(() => window.__marker)).toBe(1);
      expect((await page.evaluate(() => window.__page.updates())).at(-1)).toMatchObject({
        kind: 'hot',
        modules: ['src/App.tsx'],
      });

      await write(page, 'src/app.css', 'h1 { color: rgb(0, 128, 0); }\n');
      await frame().waitForFunction(
        () => getComputedStyle(document.querySelector('h1') as Element).color === 'rgb(0, 128, 0)',
        undefined,
        { timeout: 20_000 },
      );
      expect(await frame().evaluate(() => window.__marker)).toBe(1);
      expect(await f.getByRole('button').innerText()).toBe('count is 3');

      // label.ts exports a string, not a component: no refresh boundary, so the page reloads.
      await write(page, 'src/label.ts', "export const label: string = 'label two';\n");
      await f.getByText('label two').waitFor({ timeout: 20_000 });
      expect(await frame().evaluate(() => window.__marker)).toBeUndefined();
      expect(await f.getByRole('button').innerText()).toBe('count is 0');
      expect(await page.evaluate(() => window.__page.errors())).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('a syntax error and a missing import show the overlay with file, line, column and message; the embedding page hears them; the fix clears it', {
    timeout: 120_000,
  }, async () => {
    const { page, frame } = await open();
    try {
      const f = page.frameLocator('#host iframe');
      await f.getByRole('button').click();
      await f.getByText('count is 1').waitFor();
      const broken = APP('Hello v1').replace('<h1>Hello v1</h1>', '<h1>Hello v1</h1'); // line 9
      await write(page, 'src/App.tsx', broken);
      const overlay = f.locator('[data-preview-overlay]');
      await overlay.waitFor({ timeout: 20_000 });
      const at = await overlay.locator('[data-location]').first().innerText();
      expect(at).toMatch(/^src\/App\.tsx:10:\d+$/);
      expect(await overlay.locator('[data-message]').first().innerText()).toMatch(/Expected ">" but found/);
      expect(await overlay.locator('[data-code]').first().innerText()).toContain('<p id="label">{label}</p>');
      const err = (await page.evaluate(() => window.__page.errors())).at(-1);
      expect(err).toMatchObject({ name: 'BuildFailedError', file: 'src/App.tsx', line: 10 });
      expect(`src/App.tsx:${err?.line}:${err?.column}`).toBe(at);
      await page.waitForFunction(() =>
        window.__page.messages().some((m) => m.type === 'preview-bundler:error'),
      );
      const posted = (await page.evaluate(() => window.__page.messages())).find(
        (m) => m.type === 'preview-bundler:error',
      );
      expect(posted?.errors?.[0]).toMatchObject({ file: 'src/App.tsx', line: 10, column: err?.column });
      // The app under the overlay still runs the last good build, state and all.
      expect(await f.getByRole('button').innerText()).toBe('count is 1');

      // An import of a file that does not exist: the importing line.
      await write(page, 'src/App.tsx', APP('Hello v1').replace("from './label'", "from './nope'"));
      await overlay.getByText(/cannot find "\.\/nope"/).waitFor({ timeout: 20_000 });
      expect(await overlay.locator('[data-location]').first().innerText()).toMatch(/^src\/App\.tsx:2:\d+$/);

      await write(page, 'src/App.tsx', APP('Fixed'));
      await f.getByText('Fixed').waitFor({ timeout: 20_000 });
      await overlay.waitFor({ state: 'detached', timeout: 20_000 });
      expect(await f.getByRole('button').innerText()).toBe('count is 1');
      await page.waitForFunction(() => window.__page.messages().some((m) => m.type === 'preview-bundler:ok'));
      // A page loaded while the build is broken shows the overlay too.
      await write(page, 'src/App.tsx', broken);
      await overlay.waitFor({ timeout: 20_000 });
      await frame().evaluate(() => location.reload());
      await f.locator('[data-preview-overlay]').waitFor({ timeout: 20_000 });
      expect(await f.locator('[data-preview-overlay] [data-location]').first().innerText()).toBe(at);
    } finally {
      await page.close();
    }
  });
});
