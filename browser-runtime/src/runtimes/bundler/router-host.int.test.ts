/**
 * Issue 13, "the router hosts the runtime": the bundler runtime's files (`buildBundlerAssets`) are
 * served by the real router on their own preview origin (`bundler.<PREVIEW_DOMAIN>`), not the
 * editor's; the package cache's `/__pkg/*` is reachable from that origin, nothing else of the API is.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RouterWithSync, startRouterWithSync } from '../../../test/router-fixture.ts';
import { buildBundlerAssets } from './assets.ts';

let r: RouterWithSync;
let port: number;
let built: Map<string, string | Uint8Array>;

beforeAll(async () => {
  built = (await buildBundlerAssets()).files;
  let loads = 0;
  r = await startRouterWithSync({
    runtimeAssets: async () => {
      loads++;
      if (loads > 1) throw new Error('assets loaded twice');
      return built;
    },
  });
  port = Number(new URL(r.baseUrl).port);
}, 120_000);
afterAll(async () => {
  await r?.close();
});

function get(host: string, path: string) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>(
    (resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        })
        .on('error', reject);
    },
  );
}

describe('the router hosts the bundler runtime on its own origin', () => {
  it('serves the worker, the service worker (root scope) and esbuild.wasm byte for byte', async () => {
    const host = `bundler.preview.localhost:${port}`;
    const sw = await get(host, '/preview-sw.js');
    expect(sw.status).toBe(200);
    expect(sw.headers['content-type']).toMatch(/^text\/javascript/);
    expect(sw.headers['service-worker-allowed']).toBe('/');
    expect(sw.headers['cache-control']).toBe('no-cache');
    expect(sw.body.toString()).toBe(built.get('preview-sw.js'));
    const worker = await get(host, '/preview-bundler-worker.js');
    expect(worker.status).toBe(200);
    expect(worker.headers['cross-origin-resource-policy']).toBe('cross-origin');
    const wasm = await get(host, '/esbuild.wasm');
    expect(wasm.status).toBe(200);
    expect(wasm.headers['content-type']).toBe('application/wasm');
    expect(Buffer.compare(wasm.body, Buffer.from(built.get('esbuild.wasm') as Uint8Array))).toBe(0);
    const map = await get(host, '/vendor/importmap.json');
    expect(JSON.parse(map.body.toString()).imports.react).toBe('/vendor/react.js');
  });

  it('is not the editor’s origin: the API is not served there, and the runtime is not served on the API’s', async () => {
    const host = `bundler.preview.localhost:${port}`;
    expect((await get(host, '/v1/previews')).status).toBe(404);
    expect((await get(host, '/')).status).toBe(404);
    expect((await get(`127.0.0.1:${port}`, '/preview-sw.js')).status).toBe(404);
    // The package cache is reachable from the runtime's origin (a malformed path answers 400 there).
    expect((await get(host, '/__pkg/not-a-spec')).status).toBe(400);
  });
});
