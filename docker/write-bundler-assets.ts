/**
 * Writes the bundler runtime's files (`buildBundlerAssets` of @preview/browser-runtime: worker,
 * service worker, host page, esbuild.wasm, vendor React) into a folder, for the router image's
 * `BUNDLER_ASSETS_DIR`. Usage: `node --import tsx docker/write-bundler-assets.ts <out dir>`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { buildBundlerAssets } from '../browser-runtime/src/runtimes/bundler/assets.ts';

const out = process.argv[2];
if (!out) {
  process.stderr.write('usage: write-bundler-assets.ts <out dir>\n');
  process.exit(2);
}
const { files } = await buildBundlerAssets();
for (const [path, body] of files) {
  await mkdir(dirname(join(out, path)), { recursive: true });
  await writeFile(join(out, path), body);
}
process.stdout.write(`${files.size} bundler runtime files in ${out}\n`);
