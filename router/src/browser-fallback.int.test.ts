/**
 * Issue 13, "same-id fallback": a browser preview whose runtime cannot run is moved to the docker tier
 * under the same id (`POST /v1/previews/:id/placement`), and the edits made while it ran in the
 * browser are in the server sandbox. A real pool agent registered with the router runs the sandbox
 * (image preview-base:dev, as `npm start` does).
 */
import http from 'node:http';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DockerNode, startDockerNode } from '../test/docker-node.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { connectRawEditor } from '../test/sync/index.ts';

function hostGet(port: number, host: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>(
    (resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, headers: { host, ...headers } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    },
  );
}

describe('same-id fallback: browser → docker keeps id, files and edits', () => {
  let h: Harness;
  let node: DockerNode | undefined;
  let port: number;

  beforeAll(async () => {
    h = await createHarness({
      tiers: ({ nodeDirectory, browserPlacements }) => ({
        browser: createBrowserTier({ placements: browserPlacements }),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    node = await startDockerNode(h, { name: 'fallback', slots: 2, warmPool: 'vite-vanilla=1' });
    port = node.port;
  }, 600_000);

  afterAll(async () => {
    await node?.close();
    await h?.close();
  });

  it('moves a browser preview with edits to docker under the same id; the edits are in the sandbox', {
    timeout: 600_000,
  }, async () => {
    const files = {
      'package.json': JSON.stringify({
        name: 'fallback',
        private: true,
        type: 'module',
        scripts: { dev: 'vite' },
        devDependencies: { vite: '^8.3.8' },
      }),
      'index.html':
        '<!doctype html><html><body><div id="app"></div><script type="module" src="/src/main.js"></script></body></html>',
      'src/main.js': 'document.querySelector("#app").textContent = "v1";',
      'public/note.txt': 'before',
    };
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files, client: { bundler: true, webcontainer: false } }),
    });
    const created = (await res.json()) as { id: string; tier: string };
    expect(res.status, JSON.stringify(created)).toBe(201);
    expect(created.tier).toBe('browser');
    const id = created.id;

    // Edits while in the browser: persisted by the hub (no sandbox).
    const editor = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      { clientId: 'editor-fallback' },
    );
    editor.send({
      type: 'batch',
      seq: 1,
      ops: [
        { op: 'put', path: 'public/note.txt', content: 'edited in the browser' },
        { op: 'put', path: 'public/added.txt', content: 'added in the browser' },
      ],
    });
    await editor.waitFor((fs) => fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 1));

    // Bad input names the field.
    const bad = await h.router.app.request(`/v1/previews/${id}/placement`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ tier: 'browser', reason: 'x' }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('tier');
    const bobs = await h.router.app.request(`/v1/previews/${id}/placement`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.bob.jwt) },
      body: JSON.stringify({ tier: 'docker', reason: 'not mine' }),
    });
    expect(bobs.status).toBe(404);

    const moved = await h.router.app.request(`/v1/previews/${id}/placement`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ tier: 'docker', reason: 'WebContainers did not boot in 15 s' }),
    });
    const view = (await moved.json()) as {
      id: string;
      tier: string;
      previewUrl: string;
      reasons: Array<{ tier: string; outcome: string; reason: string }>;
    };
    expect(moved.status, JSON.stringify(view)).toBe(200);
    expect(view.id).toBe(id);
    expect(view.tier).toBe('docker');
    expect(view.reasons).toContainEqual({
      tier: 'browser',
      outcome: 'failed',
      reason: 'moved to docker: WebContainers did not boot in 15 s',
    });
    // The browser-tier editor socket was told to reconnect (not ended).
    await editor.waitFor(() => editor.closed !== undefined);
    expect(editor.closed?.code).toBe(1001);

    await h.router.previews.waitReady(id, 240_000);
    const host = `${id}.preview.localhost:${port}`;
    const link = new URL(view.previewUrl);
    const exchange = await hostGet(port, host, `${link.pathname}${link.search}`);
    expect(exchange.status).toBe(302);
    const cookie = (exchange.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? '';
    const note = await hostGet(port, host, '/note.txt', { cookie });
    expect(note.status, note.body.slice(0, 300)).toBe(200);
    expect(note.body).toBe('edited in the browser');
    const added = await hostGet(port, host, '/added.txt', { cookie });
    expect(added.body).toBe('added in the browser');

    // An editor reconnecting now syncs to the sandbox: its edit is applied there.
    const again = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      { clientId: 'editor-fallback', lastAckedSeq: 1 },
    );
    try {
      again.send({
        type: 'batch',
        seq: 2,
        ops: [{ op: 'put', path: 'public/note.txt', content: 'after the move' }],
      });
      await again.waitFor(
        (fs) =>
          fs.some((f) => f.type === 'ack' && f.stage === 'applied' && f.seq === 2) &&
          fs.some((f) => f.type === 'ack' && f.stage === 'persisted' && f.seq === 2),
        120_000,
      );
      expect((await hostGet(port, host, '/note.txt', { cookie })).body).toBe('after the move');
    } finally {
      again.ws.close();
    }
    // Repeat-safe.
    const twice = await h.router.app.request(`/v1/previews/${id}/placement`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ tier: 'docker', reason: 'again' }),
    });
    expect(twice.status).toBe(200);
    expect(((await twice.json()) as { tier: string }).tier).toBe('docker');
  });
});
