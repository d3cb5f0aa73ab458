import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { createHarness, type Harness } from '@preview/router/testkit/harness';
import { createTestDatabase, TEST_PREVIEW_IMAGE, type TestDatabase, testDocker } from '@preview/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { type CliRun, startCli, until } from './run-cli.ts';

const stopped: Array<Promise<CliRun>> = [];
afterAll(async () => {
  await Promise.all(stopped);
});

describe('preview agent', () => {
  let h: Harness | undefined;
  let server: http.Server | undefined;
  let nodeName: string | undefined;
  afterAll(async () => {
    // Only after a failed test: whatever its node left.
    if (nodeName) {
      const docker = testDocker();
      for (const c of await docker.listContainers({
        all: true,
        filters: { label: [`preview.node=${nodeName}`] },
      }))
        await docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => {});
    }
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
  });

  it('registers a node with the router over HTTP and stops on SIGTERM', async () => {
    h = await createHarness();
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server!.once('listening', r));
    h.router.attach(server);
    const routerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const name = `cli-node-${randomBytes(4).toString('hex')}`;
    nodeName = name;
    const run = startCli(
      ['agent', '--router', routerUrl, '--join-token', h.joinToken, '--name', name, '--port', '0', '--json'],
      // No warm sandboxes: this is about the node, not its pools (an empty value means unset).
      {
        WARM_POOL: 'vite-vanilla=0',
        PREVIEW_IMAGE: TEST_PREVIEW_IMAGE,
        PREVIEW_NETWORK: 'preview-net-test',
        LOG_LEVEL: 'warn',
      },
    );
    stopped.push(run.done);
    await until(() => run.stdout().trim().endsWith('}'), 60_000, 'the agent to register');
    const doc = JSON.parse(run.stdout()) as {
      nodeId: string;
      name: string;
      url: string;
      runtime: string;
      router: string;
    };
    expect(doc).toMatchObject({ name, runtime: 'docker', router: routerUrl });
    const { rows } = await h.db.pool.query(`SELECT name, url, state FROM preview_nodes WHERE id = $1`, [
      doc.nodeId,
    ]);
    expect(rows).toEqual([{ name, url: doc.url, state: 'active' }]);
    // Its API answers (with a credential only).
    expect((await fetch(`${doc.url}/v1/capacity`)).status).toBe(401);

    run.child.kill('SIGTERM');
    const end = await run.done;
    expect(end.code, end.stderr).toBe(0);
    // It made no sandbox (a stopped agent leaves its sandboxes for the next start to adopt).
    expect(
      await testDocker().listContainers({ all: true, filters: { label: [`preview.node=${name}`] } }),
    ).toEqual([]);
  }, 120_000);

  it('a bad flag is named with its rule, and exits 1', async () => {
    const r = await startCli(['agent', '--router', 'not a url', '--join-token', 'x'.repeat(20)]).done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error invalid_config: .*ROUTER_URL/);
  });
});

describe('preview up', () => {
  let db: TestDatabase | undefined;
  let dataDir: string | undefined;
  afterAll(async () => {
    await db?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('starts the embedded router, prints one JSON document with its URL and local token once ready, stops on SIGINT', async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), 'preview-up-'));
    const run = startCli(['up', '--json'], {
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      PORT: '0',
      // The router alone: the embedded agent is what `npm start`'s own test covers (router/src/main.int.test.ts).
      EMBEDDED_AGENT: 'false',
    });
    stopped.push(run.done);
    await until(() => run.stdout().trim().endsWith('}'), 120_000, 'the ready document');
    const doc = JSON.parse(run.stdout()) as { url: string; token: string; userId: string; editorUrl: string };
    expect(doc.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(doc.editorUrl).toBe(`${doc.url}/#token=${doc.token}`);
    const ready = await fetch(`${doc.url}/readyz`);
    expect(ready.status).toBe(200);
    // The printed token is a working user token.
    const list = await fetch(`${doc.url}/v1/previews`, { headers: { authorization: `Bearer ${doc.token}` } });
    expect(list.status).toBe(200);

    run.child.kill('SIGINT');
    const end = await run.done;
    expect(end.code, end.stderr).toBe(0);
    // Exactly one JSON document on stdout.
    expect(JSON.parse(end.stdout)).toMatchObject({ url: doc.url, runtime: null });
  }, 180_000);
});
