import { contentBytes, type FileOp, LIMITS, pathProblem } from '@preview/tiers';
import { BatchDisk } from './batch-disk.ts';

/** A rejected operation: which path broke which rule. */
export interface PathViolation {
  path: string;
  rule: string;
  message: string;
}

/** The directory the daemon keeps for itself at the project root (one of `RESERVED_DIRS`). */
export const TMP_DIR_NAME = '.preview-tmp';

export interface ProjectIndex {
  /** Known files (project-relative) and their sizes. */
  readonly files: Map<string, number>;
  readonly bytes: number;
}

export interface ValidateLimits {
  maxFiles: number;
  maxBytes: number;
}

/**
 * Checks a whole batch before anything is written, each op in order against the disk as the ops
 * before it in the batch leave it (a {@link BatchDisk}; the writer applies them in the same order):
 * every path by `pathProblem`, no symbolic link on any existing segment (the final one included),
 * no file where a directory must be, no folder where a file is written, nothing inside the daemon's
 * own directories, and the project's file-count and byte limits after the batch (a deleted or
 * renamed folder counts with everything in it). So `[delete a, put a/x.js]` and `[delete folder a,
 * put a]` are accepted. Returns the first violation, or `undefined` when the batch may be applied.
 */
export function validateOps(
  root: string,
  ops: readonly FileOp[],
  index: ProjectIndex,
  limits: ValidateLimits,
  view: ProjectView = ProjectView.of(root, index),
): PathViolation | undefined {
  const { disk, sizes } = view;

  for (const op of ops) {
    const paths = op.op === 'rename' ? [op.from, op.to] : [op.path];
    for (const p of paths) {
      const v = checkPath(p, disk, op.op === 'put' || (op.op === 'rename' && p === op.to));
      if (v) return v;
    }
    if (op.op === 'rename') {
      const v = checkRename(op.from, op.to, disk);
      if (v) return v;
    }
    if (op.op === 'put') {
      const n = contentBytes(op);
      if (n > LIMITS.fileBytes)
        return {
          path: op.path,
          rule: 'file_size',
          message: `file too large: ${n} bytes > ${LIMITS.fileBytes}`,
        };
      sizes.put(op.path, n);
      disk.put(op.path);
    } else if (op.op === 'delete') {
      sizes.delete(op.path);
      disk.delete(op.path);
    } else {
      sizes.rename(op.from, op.to);
      disk.rename(op.from, op.to);
    }
    if (sizes.files > limits.maxFiles)
      return {
        path: op.op === 'rename' ? op.to : op.path,
        rule: 'too_many_files',
        message: `the project would hold ${sizes.files} files > ${limits.maxFiles}`,
      };
  }
  if (sizes.bytes > limits.maxBytes) {
    const last = ops[ops.length - 1]!;
    return {
      path: last.op === 'rename' ? last.to : last.path,
      rule: 'project_size',
      message: `the project would hold ${sizes.bytes} bytes > ${limits.maxBytes}`,
    };
  }
  return undefined;
}

/**
 * The project as a run of batches leaves it before any of them is written: its tree (`BatchDisk`)
 * and its file count and bytes. `validateOps` with a view checks one more batch on top of the
 * batches checked on it before (and changes it): check each batch of a run on a `fork()`, and keep
 * the fork when the batch is accepted.
 *
 * @example
 * let view = ProjectView.of(root, index);
 * const next = view.fork();
 * if (!validateOps(root, ops, index, limits, next)) view = next;
 */
export class ProjectView {
  private constructor(
    readonly disk: BatchDisk,
    readonly sizes: BatchSizes,
  ) {}

  /** The project as it is on disk and in `index`. */
  static of(root: string, index: ProjectIndex): ProjectView {
    return new ProjectView(new BatchDisk(root), new BatchSizes(index));
  }

  fork(): ProjectView {
    return new ProjectView(this.disk.fork(), this.sizes.fork());
  }
}

/** The project's file count and bytes as a batch changes them (the index is not touched). */
class BatchSizes {
  readonly #index: ProjectIndex;
  /** Path → size after the batch's ops so far; undefined: gone. */
  readonly #changed = new Map<string, number | undefined>();
  files: number;
  bytes: number;

  constructor(index: ProjectIndex) {
    this.#index = index;
    this.files = index.files.size;
    this.bytes = index.bytes;
  }

  fork(): BatchSizes {
    const copy = new BatchSizes(this.#index);
    for (const [p, n] of this.#changed) copy.#changed.set(p, n);
    copy.files = this.files;
    copy.bytes = this.bytes;
    return copy;
  }

  #size(p: string): number | undefined {
    return this.#changed.has(p) ? this.#changed.get(p) : this.#index.files.get(p);
  }

  /** The file at `p`, or every file under the folder `p`, with sizes. */
  #atOrUnder(p: string): Array<[string, number]> {
    const own = this.#size(p);
    if (own !== undefined) return [[p, own]];
    const prefix = `${p}/`;
    const out: Array<[string, number]> = [];
    for (const [q, n] of this.#index.files)
      if (q.startsWith(prefix) && !this.#changed.has(q)) out.push([q, n]);
    for (const [q, n] of this.#changed) if (n !== undefined && q.startsWith(prefix)) out.push([q, n]);
    return out;
  }

  put(p: string, n: number): void {
    const prev = this.#size(p);
    if (prev === undefined) this.files++;
    this.bytes += n - (prev ?? 0);
    this.#changed.set(p, n);
  }

  delete(p: string): void {
    for (const [q, n] of this.#atOrUnder(p)) {
      this.files--;
      this.bytes -= n;
      this.#changed.set(q, undefined);
    }
  }

  rename(from: string, to: string): void {
    if (from === to) return;
    const moving = this.#atOrUnder(from);
    if (moving.length === 0) return;
    this.delete(to);
    for (const [q] of moving) this.#changed.set(q, undefined);
    for (const [q, n] of moving) this.#changed.set(to + q.slice(from.length), n);
  }
}

/**
 * What a rename must not do, beyond its two paths' own rules: move a folder into itself (the OS
 * refuses it half-way through a batch), or put a folder where a file is (the OS refuses that too).
 */
function checkRename(from: string, to: string, disk: BatchDisk): PathViolation | undefined {
  if (from === to) return undefined;
  if (to.startsWith(`${from}/`))
    return { path: to, rule: 'into_itself', message: `"${to}" is inside "${from}", the folder being moved` };
  if (disk.kind(from) === 'dir' && disk.kind(to) === 'file')
    return { path: to, rule: 'not_a_directory', message: `"${from}" is a folder and "${to}" a file` };
  return undefined;
}

function checkPath(p: string, disk: BatchDisk, isWriteTarget: boolean): PathViolation | undefined {
  // The shared rules, reserved directories (TMP_DIR_NAME among them) included.
  const problem = pathProblem(p);
  if (problem) return { path: p, ...problem };
  const segments = p.split('/');
  let prefix = '';
  for (let i = 0; i < segments.length; i++) {
    prefix = i === 0 ? segments[0]! : `${prefix}/${segments[i]}`;
    const last = i === segments.length - 1;
    const kind = disk.kind(prefix);
    if (kind === 'missing') return undefined; // nothing deeper can exist
    if (kind === 'symlink')
      return {
        path: p,
        rule: 'symlink',
        message: `"${prefix}" is a symbolic link; links are never followed`,
      };
    if (kind === 'other')
      return { path: p, rule: 'special_file', message: `"${prefix}" is not a regular file or directory` };
    if (!last && kind === 'file')
      return { path: p, rule: 'not_a_directory', message: `"${prefix}" is a file, not a directory` };
    if (last && kind === 'dir' && isWriteTarget)
      return { path: p, rule: 'is_directory', message: `"${prefix}" is a directory` };
  }
  return undefined;
}
