import { copyFileSync, existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A preview's own npm cache, layered over the node's shared caches without ever writing to them.
 *
 * npm needs a writable cache (with a read-only one it treats every entry as a miss), and a cache
 * shared writable between previews lets one preview plant metadata another installs. So each
 * preview installs through a private cache (on its own volume) that starts as an overlay of the
 * shared ones: cacache's index buckets (small, appended to by npm) are copied, its content files
 * (the tarballs, addressed by their sha512 and checked against it on every read) are symbolic links
 * to the shared files. New packages land in the private cache only. Building the overlay costs
 * one copy of the index (a few MiB for every template's dependencies) and one link per tarball.
 *
 * Layers are read in order: an entry in an earlier layer wins. Entries already in the private
 * cache are kept (its own downloads, or an earlier overlay).
 *
 * @example
 * overlayNpmCache({ dir: '/project/.preview-tmp/npm-cache', layers: ['/npm-cache'] });
 */
export function overlayNpmCache(opts: { dir: string; layers: readonly string[] }): void {
  const dst = join(opts.dir, '_cacache');
  for (const layer of opts.layers) {
    const src = join(layer, '_cacache');
    if (!existsSync(src) || src === dst) continue;
    mirror(src, dst, 'index-v5', (from, to) => copyFileSync(from, to));
    mirror(src, dst, 'content-v2', (from, to) => symlinkSync(from, to));
  }
}

function mirror(src: string, dst: string, rel: string, leaf: (from: string, to: string) => void): void {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(join(src, rel), { withFileTypes: true });
  } catch {
    return;
  }
  mkdirSync(join(dst, rel), { recursive: true });
  for (const e of entries) {
    const r = join(rel, e.name);
    if (e.isDirectory()) mirror(src, dst, r, leaf);
    else if (e.isFile() && !existsSync(join(dst, r))) leaf(join(src, r), join(dst, r));
  }
}
