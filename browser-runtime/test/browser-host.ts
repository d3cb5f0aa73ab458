import { createServer, type Server } from 'node:http';
import { buildBundlerAssets } from '../src/runtimes/bundler/assets.ts';

/**
 * A local origin for Chromium tests: the bundler's assets (worker, service worker, esbuild.wasm,
 * vendor React) plus test pages built with esbuild from the given entry files.
 */
export async function startBrowserHost(pages: Record<string, string>, extra: Record<string, string> = {}) {
  const esbuild = await import('esbuild');
  const { files, importMap } = await buildBundlerAssets();
  for (const [name, entry] of Object.entries(pages)) {
    const out = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      logLevel: 'silent',
    });
    files.set(`${name}.js`, out.outputFiles[0]!.text);
    files.set(
      `${name}.html`,
      `<!doctype html><html><body><div id="host" style="width:800px;height:600px"></div><script type="module" src="/${name}.js"></script></body></html>`,
    );
  }
  for (const [k, v] of Object.entries(extra)) files.set(k, v);
  const types: Record<string, string> = {
    js: 'text/javascript',
    html: 'text/html',
    wasm: 'application/wasm',
    json: 'application/json',
  };
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    requests.push(u.pathname + u.search);
    const body = files.get(u.pathname.slice(1));
    if (body === undefined) return void res.writeHead(404).end('not found');
    res.writeHead(200, {
      'content-type': types[u.pathname.split('.').pop() ?? ''] ?? 'application/octet-stream',
    });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    origin: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    importMap,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
