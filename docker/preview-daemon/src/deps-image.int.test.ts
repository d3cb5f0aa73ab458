import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium } from '@preview/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { health, SyncClient, TEMPLATES_DIR } from '../test/helpers.ts';
import { removeSandboxes, sandbox, waitReady } from '../test/image-sandbox.ts';

afterAll(removeSandboxes);

/** The environment the pool agent gives a sandbox here: a private npm cache on /tmp, the CA bundle. */
const AGENT_ENV = {
  npm_config_cache: '/tmp/npm-cache',
  NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt',
};

const TEMPLATE_PKG = JSON.parse(readFileSync(join(TEMPLATES_DIR, 'vite-vanilla/package.json'), 'utf8'));
const withDeps = (deps: Record<string, string>) =>
  JSON.stringify({ ...TEMPLATE_PKG, dependencies: deps }, null, 2);
const MAIN_WITH_MS = `import ms from 'ms';
document.querySelector('#app').innerHTML = '<p data-testid="ms">' + ms(90000) + '</p>';
`;

describe('dependencies as users change them (vite-vanilla in the image, as the agent runs it)', () => {
  it('adding, upgrading and removing a package installs it; a bad one is an error naming it while the app keeps answering', {
    timeout: 600_000,
  }, async () => {
    const s = await sandbox('vite-vanilla', AGENT_ENV);
    await waitReady(s, 120_000);
    const sync = await SyncClient.connect(`ws://127.0.0.1:${s.port}/__preview/sync?token=${s.token}`);
    const chrome = await launchChromium();
    try {
      // Example 1 of the issue: the package and its import in one batch.
      const from = sync.frames.length;
      const ack = await sync.batch(1, [
        { op: 'put', path: 'package.json', content: withDeps({ ms: '2.1.3' }) },
        { op: 'put', path: 'src/main.js', content: MAIN_WITH_MS },
      ]);
      expect(ack.type).toBe('ack');
      await sync.next(
        (f) =>
          f.type === 'status' &&
          f['phase'] === 'installing' &&
          JSON.stringify(f['log']).includes('npm install'),
        60_000,
        'installing with npm output',
        from,
      );
      await sync.next(
        (f) => f.type === 'status' && f['phase'] === 'ready',
        300_000,
        'ready after the install',
        from,
      );
      const page = await chrome.context.newPage();
      await page.goto(`http://127.0.0.1:${s.port}/`);
      await page.getByTestId('ms').waitFor({ timeout: 60_000 });
      expect(await page.getByTestId('ms').textContent()).toBe('2m');
      const files = await s.exec([
        'sh',
        '-c',
        'cat /project/node_modules/ms/package.json; test -f /project/node_modules/vite/package.json && echo vite-ok; test -e /opt/preview/templates/vite-vanilla/node_modules/ms || echo template-untouched',
      ]);
      expect(files.stdout).toContain('"version": "2.1.3"');
      expect(files.stdout).toContain('vite-ok');
      expect(files.stdout).toContain('template-untouched');

      // An upgrade (here a different version) installs that version.
      const from2 = sync.frames.length;
      expect(
        (await sync.batch(2, [{ op: 'put', path: 'package.json', content: withDeps({ ms: '2.1.2' }) }])).type,
      ).toBe('ack');
      await sync.next(
        (f) => f.type === 'status' && f['phase'] === 'ready',
        300_000,
        'ready after the upgrade',
        from2,
      );
      expect((await s.exec(['cat', '/project/node_modules/ms/package.json'])).stdout).toContain(
        '"version": "2.1.2"',
      );

      // A package that does not exist: error naming it and npm's message; the app keeps answering.
      const from3 = sync.frames.length;
      const bad = 'no-such-package-preview-router-test';
      expect(
        (
          await sync.batch(3, [
            { op: 'put', path: 'package.json', content: withDeps({ ms: '2.1.2', [bad]: '1.0.0' }) },
          ])
        ).type,
      ).toBe('ack');
      const error = await sync.next(
        (f) => f.type === 'status' && f['phase'] === 'error',
        300_000,
        'install error',
        from3,
      );
      expect(String(error['message'])).toContain(`npm install failed for ${bad}`);
      expect(String(error['message'])).toMatch(/404|not in this registry/);
      expect((await health(s.port)).status).toBe(503);
      const still = await fetch(`http://127.0.0.1:${s.port}/src/main.js`);
      expect(still.status).toBe(200);
      expect((await s.exec(['sh', '-c', 'test -f /project/node_modules/ms/package.json'])).exitCode).toBe(0);

      // Removing the dependency goes back to the template's packages, linked, not copied.
      const from4 = sync.frames.length;
      expect(
        (
          await sync.batch(4, [
            { op: 'put', path: 'package.json', content: JSON.stringify(TEMPLATE_PKG, null, 2) },
            {
              op: 'put',
              path: 'src/main.js',
              content: readFileSync(join(TEMPLATES_DIR, 'vite-vanilla/src/main.js'), 'utf8'),
            },
          ])
        ).type,
      ).toBe('ack');
      await sync.next(
        (f) => f.type === 'status' && f['phase'] === 'ready',
        300_000,
        'ready on the template',
        from4,
      );
      const back = await s.exec([
        'sh',
        '-c',
        'cat /project/node_modules/.preview-deps-hash; readlink /project/node_modules/vite; test -e /project/node_modules/ms || echo no-ms',
      ]);
      expect(back.stdout).toContain('template:/opt/preview/templates/vite-vanilla/node_modules');
      expect(back.stdout).toContain('/opt/preview/templates/vite-vanilla/node_modules/vite');
      expect(back.stdout).toContain('no-ms');
    } finally {
      sync.close();
      await chrome.close();
    }
  });
});
