import { launchChromium } from '@preview/testkit';
import { build } from 'esbuild';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RouterWithSync, startRouterWithSync } from '../../test/router-fixture.ts';

let r: RouterWithSync;
let bundle: string;
beforeAll(async () => {
  // The same client source, bundled for the page as an editor would ship it.
  const out = await build({
    entryPoints: [new URL('./index.ts', import.meta.url).pathname],
    bundle: true,
    format: 'iife',
    globalName: 'PreviewSync',
    platform: 'browser',
    target: 'chrome120',
    write: false,
  });
  bundle = out.outputFiles[0]?.text ?? '';
  r = await startRouterWithSync({
    extra: (req) => {
      const path = new URL(req.url).pathname;
      if (path === '/__test/client.js')
        return new Response(bundle, { headers: { 'content-type': 'text/javascript' } });
      if (path === '/__test/')
        return new Response('<!doctype html><script src="/__test/client.js"></script>', {
          headers: { 'content-type': 'text/html' },
        });
      return undefined;
    },
  });
});
afterAll(async () => {
  await r?.close();
});

it('runs in a Chromium page: creates a preview, syncs edits over the browser WebSocket, sees acks', async () => {
  const chrome = await launchChromium();
  try {
    const page = await chrome.context.newPage();
    await page.goto(`${r.baseUrl}/__test/`);
    const result = await page.evaluate(async (token) => {
      const { PreviewClient } = (globalThis as unknown as { PreviewSync: typeof import('./index.ts') })
        .PreviewSync;
      const client = new PreviewClient({ baseUrl: location.origin, token });
      const preview = await client.create({
        files: { 'index.html': '<h1>x</h1>' },
        client: { webcontainer: true },
      });
      const sync = client.sync(preview.id);
      const events: string[] = [];
      sync.on('applied', (e) => events.push(`applied:${e.seq}`));
      sync.on('persisted', (e) => events.push(`persisted:${e.seq}`));
      sync.write('src/main.ts', 'console.log(1)');
      sync.write('src/main.ts', 'console.log(2)');
      sync.write('logo.bin', new Uint8Array([0, 1, 2, 255]));
      await sync.whenPersisted();
      sync.rename('src/main.ts', 'src/entry.ts');
      await sync.whenPersisted();
      const state = sync.state;
      sync.close();
      let notFound = '';
      try {
        await client.get('00000000-0000-4000-8000-000000000000');
      } catch (e) {
        notFound = `${(e as Error).name}:${(e as { code: string }).code}`;
      }
      return { id: preview.id, events, state, notFound, hasGlobalWs: typeof WebSocket === 'function' };
    }, r.jwt);
    expect(result.hasGlobalWs).toBe(true);
    expect(result.state).toBe('open');
    expect(result.events).toEqual(['applied:1', 'persisted:1', 'applied:2', 'persisted:2']);
    expect(result.notFound).toBe('NotFoundError:not_found');
    const files = await r.dbFiles(result.id);
    expect(files['src/entry.ts']).toBe('console.log(2)');
    expect(files).not.toHaveProperty('src/main.ts');
    const bin = await r.db.pool.query(
      "SELECT content FROM project_files WHERE preview_id = $1 AND path = 'logo.bin'",
      [result.id],
    );
    expect([...bin.rows[0].content]).toEqual([0, 1, 2, 255]);
  } finally {
    await chrome.close();
  }
});
