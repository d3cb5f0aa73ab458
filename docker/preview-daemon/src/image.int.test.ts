import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium, runInImage, TEST_PREVIEW_IMAGE } from '@preview/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SyncClient, TEMPLATES_DIR, until } from '../test/helpers.ts';
import { docker, removeSandboxes, sandbox, waitReady } from '../test/image-sandbox.ts';

afterAll(removeSandboxes);

it('the preview-base image runs Node as a non-root user under an init', async () => {
  const { stdout, exitCode } = await runInImage(docker, TEST_PREVIEW_IMAGE, [
    'node',
    '-e',
    'console.log(JSON.stringify({ v: process.version, uid: process.getuid(), ppid: process.ppid }))',
  ]);
  expect(exitCode).toBe(0);
  const out = JSON.parse(stdout.trim().split('\n').pop()!);
  expect(out.v).toBe(process.version);
  expect(out.uid).not.toBe(0);
  expect(out.ppid).toBe(1); // tini is PID 1, Node its child
  const info = await docker.getImage(TEST_PREVIEW_IMAGE).inspect();
  expect(info.Config.User).not.toMatch(/^(0|root)?(:|$)/);
});

describe('vite-react in a hardened container', () => {
  it('serves the template, refuses bad paths, and reports HMR for an edit', {
    timeout: 180_000,
  }, async () => {
    const s = await sandbox('vite-react');
    await waitReady(s, 120_000);
    expect(await (await fetch(`http://127.0.0.1:${s.port}/`)).text()).toContain('Vite React preview');

    // The sandbox itself: not root, no capabilities, read-only root.
    const who = await s.exec(['sh', '-c', 'id -u; grep CapEff /proc/self/status; touch /x 2>&1; echo done']);
    expect(who.stdout).toMatch(/^[1-9]\d*\n/);
    expect(who.stdout).toMatch(/CapEff:\s+0+\n/);
    expect(who.stdout).toMatch(/Read-only file system/);
    // A link planted inside the project (as the app itself could) is never followed.
    expect((await s.exec(['ln', '-s', '/tmp', '/project/escape'])).exitCode).toBe(0);

    const sync = await SyncClient.connect(`ws://127.0.0.1:${s.port}/__preview/sync`, {
      authorization: `Bearer ${s.token}`,
    });
    const bad: Array<[string, unknown]> = [
      ['traversal', { op: 'put', path: '../etc/passwd', content: 'x' }],
      ['absolute', { op: 'put', path: '/tmp/x', content: 'x' }],
      ['symlink', { op: 'put', path: 'escape/pwned.js', content: 'x' }],
      ['nul', { op: 'put', path: 'a\u0000b', content: 'x' }],
    ];
    let seq = 0;
    for (const [rule, op] of bad) {
      const f = await sync.batch(++seq, [{ op: 'put', path: 'good.js', content: 'x' }, op]);
      expect(f, rule).toMatchObject({ type: 'error', seq });
      expect(String(f['message'])).toContain(`rule ${rule}`);
    }
    const listing = await s.exec(['ls', '-a', '/project', '/tmp']);
    expect(listing.stdout).not.toContain('good.js');
    expect(listing.stdout).not.toContain('pwned.js');

    const vite = new WebSocket(`ws://127.0.0.1:${s.port}/`, 'vite-hmr');
    const updates: string[] = [];
    vite.on('message', (m) => updates.push(String(m)));
    await new Promise((r) => vite.once('open', r));
    expect((await fetch(`http://127.0.0.1:${s.port}/src/App.jsx`)).status).toBe(200);
    const app = readFileSync(join(TEMPLATES_DIR, 'vite-react/src/App.jsx'), 'utf8');
    const ack = await sync.batch(++seq, [
      { op: 'put', path: 'src/App.jsx', content: app.replace('Vite React preview', 'Edited in the sandbox') },
    ]);
    expect(ack).toEqual({ type: 'ack', seq, stage: 'applied' });
    expect(await sync.next((f) => f.type === 'hmr' && f['seq'] === seq, 30_000, 'hmr')).toMatchObject({
      kind: 'update',
    });
    await until(() => updates.some((u) => u.includes('"type":"update"') && u.includes('/src/App.jsx')));
    expect(await (await fetch(`http://127.0.0.1:${s.port}/src/App.jsx`)).text()).toContain(
      'Edited in the sandbox',
    );
    vite.close();

    // A browser through the published port: Vite's client finds its HMR socket on the same host
    // and port as the page, and React keeps the counter's state across an edit (Fast Refresh).
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`http://localhost:${s.port}/`);
      const button = page.getByTestId('counter');
      await button.click();
      await button.click();
      await expect.poll(() => button.textContent()).toBe('count is 2');
      await sync.batch(++seq, [
        {
          op: 'put',
          path: 'src/App.jsx',
          content: app.replace('Vite React preview', 'Refreshed in the sandbox'),
        },
      ]);
      await expect
        .poll(() => page.getByTestId('title').textContent(), { timeout: 30_000 })
        .toBe('Refreshed in the sandbox');
      expect(await button.textContent()).toBe('count is 2');
    } finally {
      await chrome.close();
    }
    sync.close();
  });
});

describe('server templates in a hardened container', () => {
  it('express-pg reaches ready and says plainly that it has no database', { timeout: 180_000 }, async () => {
    const s = await sandbox('express-pg');
    await waitReady(s, 120_000);
    const page = await (await fetch(`http://127.0.0.1:${s.port}/`)).text();
    expect(page).toContain('Express + Postgres preview');
    expect(page).toContain('DATABASE_URL is not set');

    // The dependencies changed (a range that resolves to the same versions): reinstall from the
    // image's npm cache (read-only here, so the daemon installs from a private copy), then the
    // server comes back. A change outside the dependency fields would not reinstall.
    const sync = await SyncClient.connect(`ws://127.0.0.1:${s.port}/__preview/sync?token=${s.token}`);
    const pkg = JSON.parse(readFileSync(join(TEMPLATES_DIR, 'express-pg/package.json'), 'utf8'));
    pkg.dependencies.express = '>=5.1.0 <6';
    expect(
      (await sync.batch(1, [{ op: 'put', path: 'package.json', content: JSON.stringify(pkg) }])).type,
    ).toBe('ack');
    await sync.next((f) => f.type === 'status' && f['phase'] === 'installing', 30_000, 'installing');
    const end = await sync.next(
      (f) => f.type === 'status' && (f['phase'] === 'ready' || f['phase'] === 'error'),
      150_000,
      'ready after install',
      sync.frames.findIndex((f) => f['phase'] === 'installing'),
    );
    expect(end, JSON.stringify(end)).toMatchObject({ phase: 'ready' });
    expect((await s.exec(['sh', '-c', 'test -f /project/node_modules/express/package.json'])).exitCode).toBe(
      0,
    );
    sync.close();
  });

  it('next reaches ready (first compile can be slow) and reports HMR for an edit', {
    timeout: 300_000,
  }, async () => {
    const s = await sandbox('next');
    await waitReady(s, 280_000);
    const page = await (await fetch(`http://127.0.0.1:${s.port}/`)).text();
    expect(page).toContain('Next.js preview');
    // An edit: the daemon hears Next's own HMR socket announce the rebuilt page.
    const sync = await SyncClient.connect(`ws://127.0.0.1:${s.port}/__preview/sync?token=${s.token}`);
    const src = readFileSync(join(TEMPLATES_DIR, 'next/app/page.js'), 'utf8');
    const ack = await sync.batch(1, [
      { op: 'put', path: 'app/page.js', content: src.replace('Next.js preview', 'Next edited') },
    ]);
    expect(ack.type).toBe('ack');
    expect(await sync.next((f) => f.type === 'hmr' && f['seq'] === 1, 120_000, 'next hmr')).toMatchObject({
      kind: 'update',
    });
    expect(await (await fetch(`http://127.0.0.1:${s.port}/`)).text()).toContain('Next edited');
    sync.close();
  });
});

describe('the templates for what users bring (Vue, and the TypeScript variants create-vite defaults to)', () => {
  const titles: Record<string, string> = {
    'vite-vue': 'Vite Vue preview',
    'vite-vue-ts': 'Vite Vue TypeScript preview',
    'vite-react-ts': 'Vite React TypeScript preview',
    'vite-vanilla-ts': 'Vite TypeScript preview',
  };
  for (const [template, title] of Object.entries(titles))
    it(`${template} starts warm on the image's installed dependencies and renders in Chromium`, {
      timeout: 180_000,
    }, async () => {
      const s = await sandbox(template);
      await waitReady(s, 120_000);
      const status = (await (
        await fetch(`http://127.0.0.1:${s.port}/__preview/status`, {
          headers: { authorization: `Bearer ${s.token}` },
        })
      ).json()) as { log: string[] };
      expect(status.log.join('\n')).not.toContain('npm install');
      const marker = await s.exec(['cat', '/project/node_modules/.preview-deps-hash']);
      expect(marker.stdout).toBe(`template:/opt/preview/templates/${template}/node_modules`);
      const chrome = await launchChromium();
      try {
        const page = await chrome.context.newPage();
        await page.goto(`http://127.0.0.1:${s.port}/`);
        await page.getByTestId('title').waitFor({ timeout: 60_000 });
        expect(await page.getByTestId('title').textContent()).toBe(title);
      } finally {
        await chrome.close();
      }
    });
});
