import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Overlays made or being made, by private cache directory (one per project). */
const made = new Map<string, Promise<void>>();

/**
 * A preview's own npm cache, layered over the node's shared caches without ever writing to them.
 *
 * npm needs a writable cache (with a read-only one it treats every entry as a miss), and a cache
 * shared writable between previews lets one preview plant metadata another installs. So each
 * preview installs through a private cache (on its own volume) that starts as an overlay of the
 * shared ones: cacache's index buckets (small, appended to by npm) are copied, its content files
 * (the tarballs, addressed by their sha512 and checked against it on every read) are symbolic links
 * to the shared files. New packages land in the private cache only. Building the overlay costs
 * one copy of the index (a few MiB for every template's dependencies) and one link per tarball;
 * it runs once per directory, without blocking the event loop (the daemon starts it when the dev
 * server is first ready, so an install seldom waits for it).
 *
 * Layers are read in order: an entry in an earlier layer wins. Entries already in the private
 * cache are kept (its own downloads, or an earlier overlay).
 *
 * @example
 * await overlayNpmCache({ dir: '/project/.preview-tmp/npm-cache', layers: ['/npm-cache'] });
 */
export function overlayNpmCache(opts: { dir: string; layers: readonly string[] }): Promise<void> {
  let p = made.get(opts.dir);
  if (!p) {
    p = build(opts);
    made.set(opts.dir, p);
    // A failed overlay (a layer unreadable) is tried again by the next install.
    p.catch(() => made.delete(opts.dir));
  }
  return p;
}

async function build(opts: { dir: string; layers: readonly string[] }): Promise<void> {
  const dst = join(opts.dir, '_cacache');
  for (const layer of opts.layers) {
    const src = join(layer, '_cacache');
    if (!existsSync(src) || src === dst) continue;
    await mirror(src, dst, 'index-v5', (from, to) => copyFile(from, to));
    await mirror(src, dst, 'content-v2', (from, to) => symlink(from, to));
  }
}

async function mirror(
  src: string,
  dst: string,
  rel: string,
  leaf: (from: string, to: string) => Promise<void>,
): Promise<void> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(join(src, rel), { withFileTypes: true });
  } catch {
    return;
  }
  await mkdir(join(dst, rel), { recursive: true });
  for (const e of entries) {
    const r = join(rel, e.name);
    if (e.isDirectory()) await mirror(src, dst, r, leaf);
    else if (e.isFile() && !existsSync(join(dst, r))) await leaf(join(src, r), join(dst, r));
  }
}
