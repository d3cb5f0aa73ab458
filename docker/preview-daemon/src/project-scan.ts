import { createHash } from 'node:crypto';
import { type Dirent, readdirSync, statSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { TMP_DIR_NAME } from './validate.ts';

/** Directories that belong to tools, not to the user's project (`.expo`: Expo CLI's logs and state). */
const SKIP = new Set(['node_modules', '.git', '.next', '.expo', TMP_DIR_NAME]);

/** Files (project-relative) and sizes under `root`, not following links, skipping tool directories. */
export function scanProject(root: string): { files: Map<string, number>; bytes: number } {
  const files = new Map<string, number>();
  let bytes = 0;
  const walk = (dir: string, rel: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (SKIP.has(e.name) && rel === '') continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(`${dir}/${e.name}`, r);
      else if (e.isFile()) {
        const size = statSync(`${dir}/${e.name}`).size;
        files.set(r, size);
        bytes += size;
      }
    }
  };
  walk(root, '');
  return { files, bytes };
}

/** sha256 of every project file, re-hashing only files whose size or mtime changed since last time. */
export class Manifest {
  private cache = new Map<string, { size: number; mtimeMs: number; hash: string }>();

  constructor(private readonly root: string) {}

  async compute(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const seen = new Set<string>();
    const walk = async (dir: string, rel: string) => {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        if (SKIP.has(e.name) && rel === '') continue;
        const r = rel ? `${rel}/${e.name}` : e.name;
        const abs = `${dir}/${e.name}`;
        if (e.isDirectory()) await walk(abs, r);
        else if (e.isFile()) {
          const st = await stat(abs).catch(() => undefined);
          if (!st) continue;
          seen.add(r);
          const hit = this.cache.get(r);
          if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) {
            out[r] = hit.hash;
            continue;
          }
          const data = await readFile(abs).catch(() => undefined);
          if (!data) continue;
          const hash = createHash('sha256').update(data).digest('hex');
          this.cache.set(r, { size: st.size, mtimeMs: st.mtimeMs, hash });
          out[r] = hash;
        }
      }
    };
    await walk(this.root, '');
    for (const k of this.cache.keys()) if (!seen.has(k)) this.cache.delete(k);
    return out;
  }
}
