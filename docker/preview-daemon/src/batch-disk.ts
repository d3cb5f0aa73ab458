import { lstatSync } from 'node:fs';

/** What a project path is: on disk (by `lstat`, links never followed) or after earlier ops of a batch. */
export type PathKind = 'missing' | 'dir' | 'file' | 'symlink' | 'other';

/**
 * A path the batch has changed: gone, a file, or a folder whose contents are the disk's folder
 * `backing` (a folder renamed within the batch) or nothing at all (`backing` undefined: made by the batch).
 */
type Change = { kind: 'missing' } | { kind: 'file' } | { kind: 'dir'; backing: string | undefined };

/**
 * The project's tree as a batch changes it, op by op, without touching the disk: what `lstat`
 * says of the disk before the batch, under what the batch's earlier ops did (the writer applies the
 * same ops in the same order). So `[delete a, put a/x.js]` finds `a` gone before `a/x.js` is
 * checked, and `[delete folder a, put a]` finds no folder at `a`.
 *
 * @example
 * const disk = new BatchDisk('/project');
 * disk.kind('src'); // 'dir' (lstat)
 * disk.delete('src');
 * disk.kind('src/a.js'); // 'missing'
 */
export class BatchDisk {
  readonly #root: string;
  readonly #changes = new Map<string, Change>();
  /** `lstat` answers by disk path, once per batch (or per run of batches checked before any is written). */
  readonly #lstat: Map<string, PathKind>;

  constructor(root: string, lstat: Map<string, PathKind> = new Map()) {
    this.#root = root;
    this.#lstat = lstat;
  }

  /**
   * A copy to check the next batch of a run on, before anything of the run is written: the same
   * disk (its `lstat` answers shared) under the same changes so far. Keep the copy when that batch
   * is accepted, drop it when it is refused.
   */
  fork(): BatchDisk {
    const copy = new BatchDisk(this.#root, this.#lstat);
    for (const [p, c] of this.#changes) copy.#changes.set(p, c);
    return copy;
  }

  /** The kind of `path` (project-relative, no leading slash) at this point of the batch. */
  kind(path: string): PathKind {
    const own = this.#changes.get(path);
    if (own) return own.kind;
    const disk = this.#diskPathOf(path);
    return disk === undefined ? 'missing' : this.#diskKind(disk);
  }

  /** A put: the parents that are missing become (empty) folders, the path a file. */
  put(path: string): void {
    this.#makeParents(path);
    this.#dropUnder(path);
    this.#changes.set(path, { kind: 'file' });
  }

  /** A delete: the path and everything under it are gone. */
  delete(path: string): void {
    this.#dropUnder(path);
    this.#changes.set(path, { kind: 'missing' });
  }

  /**
   * A rename of a file or folder (the writer makes `to`'s parents first, even when `from` is gone,
   * and then a missing source is no change). Call only for a validated rename.
   */
  rename(from: string, to: string): void {
    this.#makeParents(to);
    if (from === to) return;
    const kind = this.kind(from);
    if (kind === 'missing') return;
    if (kind !== 'dir') {
      this.#dropUnder(to);
      this.#changes.set(to, { kind: 'file' });
      this.delete(from);
      return;
    }
    const own = this.#changes.get(from);
    const backing = own?.kind === 'dir' ? own.backing : this.#diskPathOf(from);
    const moved: Array<[string, Change]> = [];
    const prefix = `${from}/`;
    for (const [p, c] of this.#changes) if (p.startsWith(prefix)) moved.push([to + p.slice(from.length), c]);
    this.delete(from);
    this.#dropUnder(to);
    this.#changes.set(to, { kind: 'dir', backing });
    for (const [p, c] of moved) this.#changes.set(p, c);
  }

  /** Where `path`'s entry is on disk (the batch moved a folder above it), or undefined when the batch made or removed an ancestor. */
  #diskPathOf(path: string): string | undefined {
    let at = path.lastIndexOf('/');
    while (at > 0) {
      const ancestor = path.slice(0, at);
      const c = this.#changes.get(ancestor);
      if (c) return c.kind === 'dir' && c.backing !== undefined ? c.backing + path.slice(at) : undefined;
      at = ancestor.lastIndexOf('/');
    }
    return path;
  }

  #diskKind(diskPath: string): PathKind {
    let k = this.#lstat.get(diskPath);
    if (k === undefined) {
      k = kindAt(`${this.#root}/${diskPath}`);
      this.#lstat.set(diskPath, k);
    }
    return k;
  }

  #makeParents(path: string): void {
    let at = path.indexOf('/');
    while (at > 0) {
      const parent = path.slice(0, at);
      if (this.kind(parent) === 'missing') this.#changes.set(parent, { kind: 'dir', backing: undefined });
      at = path.indexOf('/', at + 1);
    }
  }

  #dropUnder(path: string): void {
    const prefix = `${path}/`;
    for (const p of this.#changes.keys()) if (p.startsWith(prefix)) this.#changes.delete(p);
  }
}

function kindAt(abs: string): PathKind {
  try {
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) return 'symlink';
    if (st.isDirectory()) return 'dir';
    if (st.isFile()) return 'file';
    return 'other';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    throw e;
  }
}
