import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '@hono/node-server';
import { createRouter, loadConfig, migrate, signUserJwt } from '@preview/router';
import { createLocalServerTier } from '@preview/router/testkit/local-tier';
import { createTestDatabase } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { build } from 'esbuild';
import pino from 'pino';
import { buildBundlerAssets } from '../src/runtimes/bundler/assets.ts';

/**
 * A real router with the browser tier only (no server tier: nothing can run a sandbox) or, with
 * `serverTier`, also a `docker` tier of local HTTP servers (router/test/local-tier.ts) for the
 * same-id fallback; its own sync hub, the package cache on the real npm registry (the host CA bundle trusted, as the
 * TLS-intercepting proxy here needs) and the bundler runtime hosted on `bundler.preview.localhost`.
 * The test editor page (`bundler-editor.ts`, bundled with esbuild) is served at `/__test/editor.html`
 * on that host (an editor page on the runtime's origin, which runs the bundler in itself) and on the
 * API's origin (an editor on its own origin, which runs it on the runtime origin: RemoteBundlerRuntime),
 * without the runtime host's headers.
 */
export async function startBundlerRouter(o: { serverTier?: boolean } = {}) {
  const editor = await build({
    entryPoints: [join(import.meta.dirname, 'bundler-editor.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    write: false,
    logLevel: 'silent',
  });
  const pages: Record<string, { type: string; body: string }> = {
    'editor.js': { type: 'text/javascript', body: editor.outputFiles[0]?.text ?? '' },
    'editor.html': {
      type: 'text/html',
      body: '<!doctype html><html><body><div id="host" style="width:900px;height:700px"></div><script type="module" src="/__test/editor.js"></script></body></html>',
    },
  };
  const db = await createTestDatabase({ max: 10 });
  db.pool.on('error', () => {});
  await migrate(db.pool);
  const cacheDir = await mkdtemp(join(tmpdir(), 'pkg-cache-'));
  const secret = randomBytes(32).toString('hex');
  const joinToken = randomBytes(16).toString('hex');
  const config = loadConfig({
    SUPABASE_JWT_SECRET: secret,
    PREVIEW_TOKEN_SECRET: `${secret}-preview`,
    NODE_JOIN_TOKEN: joinToken,
    NPM_CA_FILE: '/etc/ssl/certs/ca-certificates.crt',
    PACKAGE_CACHE_DIR: cacheDir,
  });
  const assets = (await buildBundlerAssets()).files;
  const router = await createRouter({
    config,
    pool: db.pool,
    tiers: ({ browserPlacements }) => ({
      browser: createBrowserTier({ placements: browserPlacements }),
      ...(o.serverTier ? { docker: createLocalServerTier({ autoReady: true }) } : {}),
    }),
    log: pino({ level: 'silent' }),
    jobs: false,
    runtimeAssets: async () => assets,
  });
  if (router.tiers.docker) {
    // The local tier's previews sit on a registered node (preview_sessions.node_id is a foreign key).
    const reg = await router.nodes.register({
      joinToken,
      name: `node-${randomBytes(3).toString('hex')}`,
      url: 'http://127.0.0.1:1',
      capacity: { slots: 4, used: 0, warm: {} },
      runtime: 'process',
    });
    (router.tiers.docker as unknown as { nodeId: string }).nodeId = reg.nodeId;
  }
  const server = (await new Promise((resolve) => {
    const s = serve(
      {
        fetch: (req: Request) => {
          const url = new URL(req.url);
          // The test editor page, on the runtime origin or on the API's (an editor on its own origin).
          const page = pages[url.pathname.replace(/^\/__test\//, '')];
          if (page && url.pathname.startsWith('/__test/'))
            return new Response(page.body, { headers: { 'content-type': page.type } });
          return router.app.fetch(req);
        },
        hostname: '127.0.0.1',
        port: 0,
      },
      () => resolve(s as Server),
    );
  })) as Server;
  router.attach(server);
  const port = (server.address() as { port: number }).port;
  return {
    apiUrl: `http://127.0.0.1:${port}`,
    runtimeOrigin: `http://bundler.preview.localhost:${port}`,
    jwt: await signUserJwt({ secret, userId: randomUUID() }),
    async close() {
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
      await router.close();
      await db.drop();
      // Retried: a tarball may still be unpacking when the router closes (ENOTEMPTY).
      await rm(cacheDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };
}
export type BundlerRouter = Awaited<ReturnType<typeof startBundlerRouter>>;
