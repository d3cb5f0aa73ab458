import { closeSync, constants, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FileOp, PutOp } from '@preview/tiers';
import { TMP_DIR_NAME } from './validate.ts';

/** Batches at most this big are written synchronously: fewer thread-pool hops on the edit path. */
const SYNC_MAX_OPS = 16;
const SYNC_MAX_BYTES = 1024 * 1024;

// O_EXCL: the temp name is fresh; O_NOFOLLOW: never write through a link planted at that name.
const TMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Writes validated operations into `root`: each put goes to a temp file in `<root>/.preview-tmp`
 * (same file system, ignored by the dev servers' watchers) and is renamed over its target, so a
 * watcher never sees half a file. Deletes and renames are applied in order; puts between them run
 * in parallel. Keeps `index` (path → size) in step with the disk.
 */
export class ProjectWriter {
  private readonly tmpDir: string;
  private counter = 0;
  private readonly knownDirs = new Set<string>();

  constructor(
    private readonly root: string,
    readonly index: { files: Map<string, number>; bytes: number },
  ) {
    this.tmpDir = `${root}/${TMP_DIR_NAME}`;
  }

  /** True when `apply` would finish without yielding. */
  isSmall(ops: readonly FileOp[]): boolean {
    if (ops.length > SYNC_MAX_OPS) return false;
    let n = 0;
    for (const op of ops) if (op.op === 'put') n += op.content.length;
    return n <= SYNC_MAX_BYTES;
  }

  applySync(ops: readonly FileOp[]): void {
    this.ensureTmp();
    for (const op of ops) {
      if (op.op === 'put') {
        const data = toBuffer(op);
        const tmp = this.tmpName();
        const fd = openSync(tmp, TMP_FLAGS, 0o644);
        try {
          let off = 0;
          while (off < data.length) off += writeSync(fd, data, off);
        } finally {
          closeSync(fd);
        }
        const target = `${this.root}/${op.path}`;
        this.mkdirFor(target);
        try {
          renameSync(tmp, target);
        } catch (e) {
          // A folder remembered as made may be gone (the app removed it): make it again, once.
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          this.knownDirs.delete(dirname(target));
          this.mkdirFor(target);
          renameSync(tmp, target);
        }
        this.record(op.path, data.length);
      } else if (op.op === 'delete') {
        rmSync(`${this.root}/${op.path}`, { recursive: true, force: true });
        this.forget(op.path);
      } else {
        const from = `${this.root}/${op.from}`;
        const to = `${this.root}/${op.to}`;
        this.mkdirFor(to);
        try {
          renameSync(from, to);
        } catch (e) {
          if (!sourceGone(e, from)) {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
            // The target's folder, remembered as made, is gone (the app removed it): make it again.
            this.knownDirs.delete(dirname(to));
            this.mkdirFor(to);
            renameSync(from, to);
          }
        }
        this.move(op.from, op.to);
      }
    }
  }

  async apply(ops: readonly FileOp[]): Promise<void> {
    this.ensureTmp();
    let group: PutOp[] = [];
    const flush = async () => {
      if (group.length === 0) return;
      const g = group;
      group = [];
      await Promise.all(g.map((op) => this.putAsync(op)));
    };
    for (const op of ops) {
      if (op.op === 'put') {
        // Two puts of one path in a group would race; keep the order by flushing first.
        if (group.some((g) => g.path === op.path)) await flush();
        group.push(op);
        continue;
      }
      await flush();
      if (op.op === 'delete') {
        await rm(`${this.root}/${op.path}`, { recursive: true, force: true });
        this.forget(op.path);
      } else {
        const to = `${this.root}/${op.to}`;
        await mkdir(dirname(to), { recursive: true });
        await rename(`${this.root}/${op.from}`, to).catch((e: unknown) => {
          if (!sourceGone(e, `${this.root}/${op.from}`)) throw e;
        });
        this.move(op.from, op.to);
      }
    }
    await flush();
  }

  private async putAsync(op: PutOp): Promise<void> {
    const data = toBuffer(op);
    const tmp = this.tmpName();
    const fh = await open(tmp, TMP_FLAGS, 0o644);
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
    const target = `${this.root}/${op.path}`;
    const dir = dirname(target);
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.knownDirs.add(dir);
    }
    try {
      await rename(tmp, target);
    } catch (e) {
      // A folder remembered as made may be gone (the app removed it): make it again, once.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await mkdir(dir, { recursive: true });
      await rename(tmp, target);
    }
    this.record(op.path, data.length);
  }

  private ensureTmp(): void {
    if (this.knownDirs.has(this.tmpDir)) return;
    mkdirSync(this.tmpDir, { recursive: true });
    this.knownDirs.add(this.tmpDir);
  }

  private tmpName(): string {
    return `${this.tmpDir}/${process.pid}-${++this.counter}.tmp`;
  }

  /**
   * Makes `target`'s folder unless it is known to exist: one `mkdir` per folder, not per file. A
   * folder the daemon made can vanish through a delete or rename op (which clears the memo) or the
   * app itself (a rename into it then fails with ENOENT, and the folder is made again).
   */
  private mkdirFor(target: string): void {
    const dir = dirname(target);
    if (dir === this.root || this.knownDirs.has(dir)) return;
    mkdirSync(dir, { recursive: true });
    this.knownDirs.add(dir);
  }

  private record(path: string, size: number): void {
    const prev = this.index.files.get(path);
    this.index.bytes += size - (prev ?? 0);
    this.index.files.set(path, size);
  }

  private forget(path: string): void {
    const prefix = `${path}/`;
    for (const [p, size] of this.index.files)
      if (p === path || p.startsWith(prefix)) {
        this.index.files.delete(p);
        this.index.bytes -= size;
      }
    this.knownDirs.clear();
  }

  private move(from: string, to: string): void {
    const size = this.index.files.get(from);
    this.forget(to);
    if (size !== undefined) {
      this.index.files.delete(from);
      this.index.files.set(to, size);
      return;
    }
    // A directory moved: re-key everything under it.
    const prefix = `${from}/`;
    for (const [p, s] of [...this.index.files])
      if (p.startsWith(prefix)) {
        this.index.files.delete(p);
        this.index.files.set(to + p.slice(from.length), s);
      }
    this.knownDirs.clear();
  }
}

function toBuffer(op: PutOp): Buffer {
  return op.encoding === 'base64' ? Buffer.from(op.content, 'base64') : Buffer.from(op.content, 'utf8');
}

/**
 * A rename whose source no longer exists is treated like a delete of a missing file: already done.
 * An editor only renames files it has, so a missing source means this rename was applied before by
 * a sender that did not say so (a batch without `origin`; batches with one are answered from the
 * origin ledger before they get here).
 */
function sourceGone(e: unknown, from: string): boolean {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return false;
  try {
    lstatSync(from);
    return false;
  } catch {
    return true;
  }
}
