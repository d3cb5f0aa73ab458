import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requirePrerequisites } from '@preview/testkit';
import { beforeEach, describe, expect, it } from 'vitest';
import { buildDaemon, health, PKG_DIR, SyncClient, spawnDaemon, until } from '../test/helpers.ts';

// express-pg needs its installed dependencies: the templates as docker/preview-base/build.sh stages them.
const INSTALLED_TEMPLATES = join(PKG_DIR, '../preview-base/.build/context/templates');
const noInstalledTemplates = existsSync(join(INSTALLED_TEMPLATES, 'express-pg/node_modules/express'))
  ? undefined
  : 'installed templates missing: run scripts/test-env.sh (docker/preview-base/build.sh stages them)';

describe('a Node server (express-pg) restarted by the daemon', () => {
  beforeEach(() => requirePrerequisites(noInstalledTemplates));
  it('an edit swaps in a new process without a failed request; a crash shows as error, and a fix brings it back', async () => {
    buildDaemon();
    const d = await spawnDaemon({
      template: 'express-pg',
      env: { PREVIEW_TEMPLATES_DIR: INSTALLED_TEMPLATES },
    });
    const server = readFileSync(join(INSTALLED_TEMPLATES, 'express-pg/server.js'), 'utf8');
    const url = `http://127.0.0.1:${d.port}/`;
    let sync: SyncClient | undefined;
    try {
      await until(async () => (await health(d.port)).status === 200, 90_000, 'express-pg ready');
      sync = await SyncClient.connect(`ws://127.0.0.1:${d.port}/__preview/sync`, {
        authorization: `Bearer ${d.token}`,
      });
      const s = sync;

      // Requests keep going while the edit lands: every one of them is answered by a server.
      const statuses: number[] = [];
      let polling = true;
      const poller = (async () => {
        while (polling)
          statuses.push(
            await fetch(url).then(
              (r) => r.status,
              () => 0,
            ),
          );
      })();
      const edited = server.replace('Express + Postgres preview</h1>', 'Edited server</h1>');
      expect(edited).not.toBe(server);
      expect((await s.batch(1, [{ op: 'put', path: 'server.js', content: edited }])).type).toBe('ack');
      expect(await s.next((f) => f.type === 'hmr' && f['seq'] === 1, 60_000, 'restart hmr')).toMatchObject({
        kind: 'restart',
      });
      await until(
        async () => (await (await fetch(url)).text()).includes('Edited server'),
        10_000,
        'new code',
      );
      polling = false;
      await poller;
      expect(statuses.length).toBeGreaterThan(0);
      expect(new Set(statuses)).toEqual(new Set([200]));

      // A server that dies at start: the phase says so, with its output.
      const from = s.frames.length;
      await s.batch(2, [
        { op: 'put', path: 'server.js', content: `${edited}\nthrow new Error('boom at start');\n` },
      ]);
      const failed = await s.next(
        (f) => f.type === 'status' && f['phase'] === 'error',
        60_000,
        'error',
        from,
      );
      expect(JSON.stringify(failed['log'])).toContain('boom at start');
      expect((await health(d.port)).status).toBe(503);

      // Fixed: it runs again.
      await s.batch(3, [{ op: 'put', path: 'server.js', content: server }]);
      await until(async () => (await health(d.port)).status === 200, 60_000, 'ready after the fix');
      expect(await (await fetch(url)).text()).toContain('Express + Postgres preview');
    } finally {
      sync?.close();
      await d.stop();
    }
  });
});
