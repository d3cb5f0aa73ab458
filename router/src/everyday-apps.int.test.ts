/**
 * Apps as users bring them, through the router's preview proxy with the docker tier (a real pool
 * agent registered with the router, as `npm start` runs it), in Chromium: a React-TS and a Vue-TS
 * app scaffolded from create-vite at test time (its npm package, never committed) with their own
 * vite.config.ts and one extra dependency, and an Express API with its own dependencies listening on
 * port 3000, and an Expo app (React Native through Metro's web target; the expo template's files,
 * which are expo-template-blank-typescript plus the web packages `npx expo install` adds). Each
 * renders, updates on an edit (React keeping component state), and survives a dependency added by
 * an edit.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium, packCreateVite } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DockerNode, startDockerNode } from '../test/docker-node.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';

type Files = Record<string, string | { content: string; encoding: 'base64' }>;

/** The expo template (templates/expo) as a user's project files. */
function expoProject(): Files {
  const root = join(import.meta.dirname, '../../templates/expo');
  const files: Files = {};
  const walk = (rel: string) => {
    for (const entry of readdirSync(join(root, rel))) {
      if (entry === 'node_modules' || entry === '.expo') continue;
      const path = rel ? `${rel}/${entry}` : entry;
      if (statSync(join(root, path)).isDirectory()) walk(path);
      else if (path.endsWith('.png'))
        files[path] = { content: readFileSync(join(root, path)).toString('base64'), encoding: 'base64' };
      else files[path] = readFileSync(join(root, path), 'utf8');
    }
  };
  walk('');
  return files;
}

function text(files: Files, path: string): string {
  const f = files[path];
  if (typeof f !== 'string') throw new Error(`${path}: not a text file of the scaffold`);
  return f;
}

function withDeps(pkgText: string, deps: Record<string, string>): string {
  const pkg = JSON.parse(pkgText);
  pkg.dependencies = { ...pkg.dependencies, ...deps };
  return JSON.stringify(pkg, null, 2);
}

describe('everyday apps through the router, docker tier, in Chromium', () => {
  let h: Harness;
  let node: DockerNode | undefined;
  let createVite: ReturnType<typeof packCreateVite>;
  let chrome: Awaited<ReturnType<typeof launchChromium>>;

  beforeAll(async () => {
    createVite = packCreateVite();
    h = await createHarness({
      tiers: ({ nodeDirectory }) => ({
        browser: createBrowserTier(),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    node = await startDockerNode(h, {
      name: 'apps',
      slots: 6,
      warmPool: 'vite-react-ts=1,vite-vue-ts=1,express-pg=1,expo=1',
    });
    chrome = await launchChromium();
  }, 600_000);

  afterAll(async () => {
    await chrome?.close();
    await node?.close();
    await h?.close();
    createVite?.remove();
  });

  /** Creates the preview (template detected by the router) and opens it. */
  async function open(files: Files): Promise<{ id: string; page: Page; template: string }> {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files, serverOnly: true }),
    });
    const p = (await res.json()) as { id: string; tier: string; previewUrl: string; template: string };
    expect(p.tier, JSON.stringify(p)).toBe('docker');
    const page = await chrome.context.newPage();
    const lines: string[] = [];
    consoleOf.set(page, lines);
    page.on('console', (m) => lines.push(`${m.type()}: ${m.text().slice(0, 300)}`));
    page.on('pageerror', (e) => lines.push(`pageerror: ${e.message.slice(0, 300)}`));
    // Vite's HMR messages to the page: `settled` reads them.
    page.on('websocket', (ws) =>
      ws.on('framereceived', (f) => lines.push(`hmr: ${String(f.payload).slice(0, 300)}`)),
    );
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) lines.push(`navigated: ${f.url()}`);
    });
    await page.goto(p.previewUrl.replace('127.0.0.1', 'preview.localhost'));
    return { id: p.id, page, template: p.template };
  }

  const consoleOf = new WeakMap<Page, string[]>();
  let seq = 0;
  async function edit(id: string, ops: Array<Record<string, unknown>>): Promise<void> {
    const put = await h.router.app.request(`/v1/previews/${id}/files`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ type: 'batch', seq: ++seq, ops }),
    });
    if (put.status !== 200) {
      const s = await h.router.app.request(`/v1/previews/${id}`, { headers: bearer(h.alice.jwt) });
      const onNode = await node?.agent.status(id);
      throw new Error(
        `edit answered ${put.status} ${await put.text()}; preview: ${await s.text()}; on the node: ${JSON.stringify(onNode)}`,
      );
    }
  }

  async function shows(page: Page, testId: string, expected: string, timeout = 240_000): Promise<void> {
    await page
      .waitForFunction(
        ([id, want]) => document.querySelector(`[data-testid="${id}"]`)?.textContent?.trim() === want,
        [testId, expected] as const,
        { timeout },
      )
      .catch(async (e) => {
        throw new Error(
          `${testId} never showed "${expected}"; page text: ${(await page.evaluate(() => document.body?.innerText ?? '')).slice(0, 1000)}\nconsole:\n${(consoleOf.get(page) ?? []).slice(-40).join('\n')}`,
          {
            cause: e,
          },
        );
      });
  }

  /**
   * Waits until the document in `page` is the one that stays: its dev server's HMR socket is
   * connected and told it nothing that reloads it. The first load of a project that brought its own
   * config and dependencies can be told to reload once (its HTML came from a dev server that was
   * replaced as the project settled); a click before that would be lost with the page.
   */
  async function settled(page: Page): Promise<void> {
    await expect
      .poll(
        () => {
          const lines = consoleOf.get(page) ?? [];
          const since = lines.slice(lines.findLastIndex((l) => l.startsWith('navigated:')) + 1);
          return (
            since.some((l) => l.startsWith('hmr: {"type":"connected"')) &&
            !since.some((l) => l.includes('"type":"full-reload"'))
          );
        },
        { timeout: 240_000, interval: 200 },
      )
      .toBe(true);
  }

  /** Reloads `page` until `testId` shows `expected` (a server app, or a dev server restarted by an install). */
  async function showsAfterReload(page: Page, testId: string, expected: string): Promise<void> {
    await expect
      .poll(
        async () => {
          await page.reload().catch(() => {});
          return page
            .getByTestId(testId)
            .textContent({ timeout: 2000 })
            .catch(() => null);
        },
        { timeout: 240_000, interval: 2000 },
      )
      .toBe(expected);
  }

  it('a React-TS app from create-vite with its own vite.config.ts and one extra dependency', {
    timeout: 900_000,
  }, async () => {
    seq = 0;
    const files = createVite.template('react-ts');
    files['package.json'] = withDeps(text(files, 'package.json'), { ms: '2.1.3' });
    files['vite.config.ts'] = text(files, 'vite.config.ts').replace(
      'plugins: [react()],',
      "plugins: [react()],\n  define: { __FLAVOUR__: JSON.stringify('own vite.config.ts') },",
    );
    const app = `import ms from 'ms'\n${text(files, 'src/App.tsx').replace(
      '<h1>Get started</h1>',
      '<h1 data-testid="title">Get started</h1><p data-testid="extra">{ms(90000)} {__FLAVOUR__}</p>',
    )}`;
    files['src/App.tsx'] = app;
    const { id, page, template } = await open(files);
    expect(template).toBe('vite-react-ts');
    await shows(page, 'extra', '2m own vite.config.ts');
    // One click counted on the document that stays (see `settled`); again if it was reloaded since.
    const navigations = () => (consoleOf.get(page) ?? []).filter((l) => l.startsWith('navigated:')).length;
    for (let attempt = 1; ; attempt++) {
      await settled(page);
      const before = navigations();
      // As long as `shows` waits: a reload under load can take the dev server a while to answer.
      await page
        .getByRole('button', { name: /count is/i })
        .click({ timeout: 240_000 })
        .catch(async (e) => {
          throw new Error(
            `no "count is" button; page text: ${(await page.evaluate(() => document.body?.innerText ?? '').catch(() => '?')).slice(0, 1000)}\nconsole and HMR:\n${(consoleOf.get(page) ?? []).slice(-40).join('\n')}`,
            { cause: e },
          );
        });
      await expect
        .poll(
          async () =>
            navigations() !== before
              ? 'reloaded'
              : await page
                  .getByRole('button', { name: /count is/i })
                  .textContent({ timeout: 5_000 })
                  .catch(() => ''),
          { timeout: 30_000 },
        )
        .toMatch(/1|reloaded/);
      if (navigations() === before) break;
      expect(attempt, 'the page kept reloading').toBeLessThan(3);
    }

    // An edit: Fast Refresh keeps the count.
    await edit(id, [
      { op: 'put', path: 'src/App.tsx', content: app.replace('>Get started<', '>Get going<') },
    ]);
    await shows(page, 'title', 'Get going', 60_000);
    expect(await page.getByRole('button', { name: /count is/i }).textContent()).toMatch(/1/);

    // A dependency added by an edit.
    await edit(id, [
      { op: 'put', path: 'package.json', content: withDeps(text(files, 'package.json'), { clsx: '2.1.1' }) },
      {
        op: 'put',
        path: 'src/App.tsx',
        content: `import clsx from 'clsx'\n${app.replace('>Get started<', '>Get going<').replace('</h1>', "</h1><p data-testid=\"dep\">{clsx('a', false, 'c')}</p>")}`,
      },
    ]);
    await shows(page, 'dep', 'a c');
    await shows(page, 'extra', '2m own vite.config.ts', 10_000);
  });

  it('a Vue-TS app from create-vite', { timeout: 900_000 }, async () => {
    seq = 0;
    const files = createVite.template('vue-ts');
    const hello = text(files, 'src/components/HelloWorld.vue').replace(
      '<h1>Get started</h1>',
      '<h1 data-testid="title">Get started</h1>',
    );
    files['src/components/HelloWorld.vue'] = hello;
    const { id, page, template } = await open(files);
    expect(template).toBe('vite-vue-ts');
    await shows(page, 'title', 'Get started');

    await edit(id, [
      {
        op: 'put',
        path: 'src/components/HelloWorld.vue',
        content: hello.replace('>Get started<', '>Get going<'),
      },
    ]);
    await shows(page, 'title', 'Get going', 60_000);

    const withClsx = hello
      .replace('>Get started<', '>Get going<')
      .replace('<script setup lang="ts">', '<script setup lang="ts">\nimport clsx from \'clsx\'')
      .replace('</h1>', "</h1><p data-testid=\"dep\">{{ clsx('a', false, 'c') }}</p>");
    await edit(id, [
      { op: 'put', path: 'package.json', content: withDeps(text(files, 'package.json'), { clsx: '2.1.1' }) },
      { op: 'put', path: 'src/components/HelloWorld.vue', content: withClsx },
    ]);
    await shows(page, 'dep', 'a c');
  });

  it('an Express API with its own dependencies, listening on port 3000', { timeout: 900_000 }, async () => {
    seq = 0;
    const pkg = JSON.stringify({
      name: 'my-api',
      type: 'module',
      main: 'server.js',
      dependencies: { express: '^5.1.0', ms: '2.1.3' },
    });
    const server = `import express from 'express';
import ms from 'ms';
const app = express();
app.get('/', (_req, res) => res.send('<h1 data-testid="title">My API</h1><p data-testid="extra">' + ms(90000) + '</p>'));
app.get('/api/health', (_req, res) => res.json({ ok: true }));
app.listen(3000, () => console.log('listening on 3000'));
`;
    const { id, page, template } = await open({ 'package.json': pkg, 'server.js': server });
    expect(template).toBe('express-pg');
    await shows(page, 'extra', '2m');

    await edit(id, [{ op: 'put', path: 'server.js', content: server.replace('My API', 'My edited API') }]);
    await expect
      .poll(
        async () => {
          await page.reload();
          return page.getByTestId('title').textContent();
        },
        { timeout: 60_000 },
      )
      .toBe('My edited API');

    await edit(id, [
      { op: 'put', path: 'package.json', content: withDeps(pkg, { clsx: '2.1.1' }) },
      {
        op: 'put',
        path: 'server.js',
        content: `import clsx from 'clsx';\n${server
          .replace('My API', 'My edited API')
          .replace("'</p>'", "'</p><p data-testid=\"dep\">' + clsx('a', false, 'c') + '</p>'")}`,
      },
    ]);
    await showsAfterReload(page, 'dep', 'a c');
  });

  it('an app that runs out of memory reads failed with the reason in GET and SSE, reported by its node', {
    timeout: 300_000,
  }, async () => {
    const server = `import express from 'express';
const app = express();
app.get('/', (_req, res) => res.send('<h1>fine</h1>'));
app.get('/bomb', (_req, res) => { res.send('allocating'); const a = []; setInterval(() => { for (let i = 0; i < 16; i++) a.push(Buffer.alloc(8 << 20, 1)); }, 10); });
app.listen(process.env.PORT);
`;
    const pkg = JSON.stringify({ name: 'oom', type: 'module', dependencies: { express: '^5.1.0' } });
    const { id, page } = await open({ 'package.json': pkg, 'server.js': server });
    await expect.poll(() => page.locator('h1').textContent(), { timeout: 120_000 }).toBe('fine');
    const events = await h.router.app.request(`/v1/previews/${id}/events`, { headers: bearer(h.alice.jwt) });
    const reader = events.body!.getReader();
    const decoder = new TextDecoder();
    let sse = '';
    await page.goto(new URL('/bomb', page.url()).href);
    // The SSE stream says failed with the reason (the node reports the exit; no poll needed).
    while (!/"state":"failed"[^\n]*(out of memory|OOM)/i.test(sse)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`SSE ended before the failed state: ${sse}`);
      sse += decoder.decode(value, { stream: true });
    }
    await reader.cancel();
    const got = (await (
      await h.router.app.request(`/v1/previews/${id}`, { headers: bearer(h.alice.jwt) })
    ).json()) as { state: string; error: string | null };
    expect(got.state).toBe('failed');
    expect(got.error).toMatch(/out of memory|OOM/i);
  });

  it('an Expo app (React Native through the web target)', { timeout: 900_000 }, async () => {
    seq = 0;
    const files = expoProject();
    const app = (title: string, dep = false) => `import { useState } from 'react';
import { Pressable, Text, View } from 'react-native';
${dep ? "import ms from 'ms';\n" : ''}
export default function App() {
  const [count, setCount] = useState(0);
  return (
    <View style={{ flex: 1, alignItems: 'center', justifyContent: 'center' }}>
      <Text testID="title">${title}</Text>
      <Pressable testID="counter" onPress={() => setCount((c) => c + 1)}>
        <Text>count is {count}</Text>
      </Pressable>${dep ? '\n      <Text testID="dep">{ms(90000)}</Text>' : ''}
    </View>
  );
}
`;
    files['App.tsx'] = app('My Expo app');
    const { id, page, template } = await open(files);
    expect(template).toBe('expo');
    await shows(page, 'title', 'My Expo app');
    await page.getByTestId('counter').click();
    await expect.poll(() => page.getByTestId('counter').textContent()).toBe('count is 1');

    // An edit: Fast Refresh over Metro's socket, through the preview proxy, keeps the count.
    await edit(id, [{ op: 'put', path: 'App.tsx', content: app('My edited Expo app') }]);
    await shows(page, 'title', 'My edited Expo app', 60_000);
    expect(await page.getByTestId('counter').textContent()).toBe('count is 1');

    // A dependency added by an edit: installed, Metro restarted on it. Expo's web client does not
    // reconnect to a restarted Metro by itself, so the page is reloaded until it renders with it.
    await edit(id, [
      { op: 'put', path: 'package.json', content: withDeps(text(files, 'package.json'), { ms: '2.1.3' }) },
      { op: 'put', path: 'App.tsx', content: app('My edited Expo app', true) },
    ]);
    await showsAfterReload(page, 'dep', '2m');
  });
});
