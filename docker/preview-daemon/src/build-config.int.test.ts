import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { launchChromium } from '@preview/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  buildDaemon,
  type HostDaemon,
  health,
  SyncClient,
  spawnDaemon,
  TEMPLATES_DIR,
  tempProjectDir,
  until,
} from '../test/helpers.ts';

/** The user's own build configuration: a TypeScript Vite config (a `define`), tsconfig paths. */
const USER_FILES: Record<string, string> = {
  'vite.config.ts': `import react from '@vitejs/plugin-react';
import { defineConfig, type UserConfig } from 'vite';

const greeting: string = 'configured in TypeScript';
const config: UserConfig = { plugins: [react()], define: { __GREETING__: JSON.stringify(greeting) } };
export default defineConfig(config);
`,
  'tsconfig.json': JSON.stringify({
    compilerOptions: { jsx: 'react-jsx', allowJs: true, baseUrl: '.', paths: { '@/*': ['./src/*'] } },
    include: ['src'],
  }),
  'src/lib/message.ts': `export const message: string = 'found through tsconfig paths';\n`,
  'src/App.jsx': `import { useState } from 'react';
import { message } from '@/lib/message';

export default function App() {
  const [count, setCount] = useState(0);
  return (
    <main>
      <p data-testid="greeting">{__GREETING__}</p>
      <p data-testid="message">{message}</p>
      <button type="button" data-testid="counter" onClick={() => setCount((c) => c + 1)}>count is {count}</button>
    </main>
  );
}
`,
};
const USER_INDEX = readFileSync(join(TEMPLATES_DIR, 'vite-react/index.html'), 'utf8').replace(
  '<title>Vite React preview</title>',
  '<title>My own app</title>',
);

let d: HostDaemon | undefined;
let chrome: Awaited<ReturnType<typeof launchChromium>> | undefined;
beforeAll(() => {
  buildDaemon();
});
afterEach(async () => {
  await chrome?.close();
  chrome = undefined;
  await d?.stop();
  d = undefined;
});

async function expectUserConfig(port: number) {
  chrome = await launchChromium();
  const page = await chrome.context.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.getByTestId('greeting').waitFor({ timeout: 30_000 });
  expect(await page.getByTestId('greeting').textContent()).toBe('configured in TypeScript');
  expect(await page.getByTestId('message').textContent()).toBe('found through tsconfig paths');
  expect(await page.title()).toBe('My own app');
  return page;
}

describe("the user's build configuration (vite-react)", () => {
  it('a cold start loads vite.config.ts (Node 20) and tsconfig paths', { timeout: 180_000 }, async () => {
    const dir = tempProjectDir();
    cpSync(join(TEMPLATES_DIR, 'vite-react'), dir, { recursive: true });
    rmSync(join(dir, 'vite.config.js'));
    writeFileSync(join(dir, 'index.html'), USER_INDEX);
    for (const [path, content] of Object.entries(USER_FILES)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
    d = await spawnDaemon({ template: 'vite-react', projectDir: dir });
    await until(async () => (await health(d!.port)).status === 200, 120_000, 'ready');
    await expectUserConfig(d.port);
  });

  it('a warm claim that brings its own config, index.html and tsconfig is ready only on them, and the page does not reload by itself', {
    timeout: 180_000,
  }, async () => {
    d = await spawnDaemon({ template: 'vite-react' });
    await until(async () => (await health(d!.port)).status === 200, 120_000, 'warm and ready');
    const sync = await SyncClient.connect(`ws://127.0.0.1:${d.port}/__preview/sync?token=${d.token}`);
    try {
      // The claim's one batch (seq 0), as the agent sends it.
      const ops = [
        { op: 'delete', path: 'vite.config.js' },
        { op: 'put', path: 'index.html', content: USER_INDEX },
        ...Object.entries(USER_FILES).map(([path, content]) => ({ op: 'put', path, content })),
      ];
      const ack = await sync.batch(0, ops);
      expect(ack.type).toBe('ack');
      const from = sync.frames.indexOf(ack);
      // Not ready from the ack on, until the dev server runs with the user's configuration.
      expect((await health(d.port)).status).toBe(503);
      const ready = await sync.next(
        (f) => f.type === 'status' && f['phase'] === 'ready',
        120_000,
        'ready',
        from,
      );
      const page = await expectUserConfig(d.port);
      await page.evaluate(() => {
        (window as unknown as { marker: number }).marker = 1;
      });
      await page.getByTestId('counter').click();
      // Whatever the dev server still had to say about the claim's files would arrive now.
      await new Promise((r) => setTimeout(r, 3000));
      expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(1);
      expect(await page.getByTestId('counter').textContent()).toBe('count is 1');
      const after = sync.frames.slice(sync.frames.indexOf(ready) + 1);
      expect(
        after.filter((f) => f.type === 'status').map((f) => f['phase']),
        JSON.stringify(after),
      ).toEqual([]);
    } finally {
      sync.close();
    }
  });
});
