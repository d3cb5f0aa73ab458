import { lstatSync } from 'node:fs';
import { contentBytes, type FileOp, LIMITS, pathProblem } from '@preview/tiers';

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
 * Checks a whole batch against the disk before anything is written: every path by `pathProblem`,
 * no symbolic link on any existing segment (the final one included), no file where a directory
 * must be, nothing inside the daemon's own directories, and the project's file-count and byte
 * limits after the batch. Returns the first violation, or `undefined` when the batch may be applied.
 */
export function validateOps(
  root: string,
  ops: readonly FileOp[],
  index: ProjectIndex,
  limits: ValidateLimits,
): PathViolation | undefined {
  // Per-batch memo of what lstat said about a project-relative prefix ('' = root itself).
  const kinds = new Map<string, Kind>();
  const batchFiles = new Set<string>();
  let files = index.files.size;
  let bytes = index.bytes;
  const sizeOf = (p: string) => (batchSizes.has(p) ? batchSizes.get(p)! : index.files.get(p));
  const batchSizes = new Map<string, number | undefined>();

  for (const op of ops) {
    const paths = op.op === 'rename' ? [op.from, op.to] : [op.path];
    for (const p of paths) {
      const v = checkPath(root, p, kinds, batchFiles, op.op === 'put' || (op.op === 'rename' && p === op.to));
      if (v) return v;
    }
    if (op.op === 'rename') {
      const v = checkRename(root, op.from, op.to, kinds);
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
      const prev = sizeOf(op.path);
      if (prev === undefined) files++;
      bytes += n - (prev ?? 0);
      batchSizes.set(op.path, n);
      batchFiles.add(op.path);
    } else if (op.op === 'delete') {
      const prev = sizeOf(op.path);
      if (prev !== undefined) {
        files--;
        bytes -= prev;
      }
      batchSizes.set(op.path, undefined);
      batchFiles.delete(op.path);
    } else {
      const prev = sizeOf(op.from);
      const over = sizeOf(op.to);
      if (over !== undefined) {
        files--;
        bytes -= over;
      }
      batchSizes.set(op.to, prev);
      batchSizes.set(op.from, undefined);
      batchFiles.delete(op.from);
      batchFiles.add(op.to);
    }
    if (files > limits.maxFiles)
      return {
        path: op.op === 'rename' ? op.to : op.path,
        rule: 'too_many_files',
        message: `the project would hold ${files} files > ${limits.maxFiles}`,
      };
  }
  if (bytes > limits.maxBytes) {
    const last = ops[ops.length - 1]!;
    return {
      path: last.op === 'rename' ? last.to : last.path,
      rule: 'project_size',
      message: `the project would hold ${bytes} bytes > ${limits.maxBytes}`,
    };
  }
  return undefined;
}

type Kind = 'missing' | 'dir' | 'file' | 'symlink' | 'other';

/**
 * What a rename must not do, beyond its two paths' own rules: move a folder into itself (the OS
 * refuses it half-way through a batch), or put a folder where a file is (the OS refuses that too).
 */
function checkRename(
  root: string,
  from: string,
  to: string,
  kinds: Map<string, Kind>,
): PathViolation | undefined {
  if (from === to) return undefined;
  if (to.startsWith(`${from}/`))
    return { path: to, rule: 'into_itself', message: `"${to}" is inside "${from}", the folder being moved` };
  const kind = (p: string) => {
    let k = kinds.get(p);
    if (k === undefined) {
      k = kindAt(`${root}/${p}`);
      kinds.set(p, k);
    }
    return k;
  };
  if (kind(from) === 'dir' && kind(to) === 'file')
    return { path: to, rule: 'not_a_directory', message: `"${from}" is a folder and "${to}" a file` };
  return undefined;
}

function kindAt(abs: string): Kind {
  try {
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) return 'symlink';
    if (st.isDirectory()) return 'dir';
    if (st.isFile()) return 'file';
    return 'other';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR')
      return 'missing';
    throw e;
  }
}

function checkPath(
  root: string,
  p: string,
  kinds: Map<string, Kind>,
  batchFiles: Set<string>,
  isWriteTarget: boolean,
): PathViolation | undefined {
  // The shared rules, reserved directories (TMP_DIR_NAME among them) included.
  const problem = pathProblem(p);
  if (problem) return { path: p, ...problem };
  const segments = p.split('/');
  let prefix = '';
  for (let i = 0; i < segments.length; i++) {
    prefix = i === 0 ? segments[0]! : `${prefix}/${segments[i]}`;
    const last = i === segments.length - 1;
    if (!last && batchFiles.has(prefix))
      return { path: p, rule: 'not_a_directory', message: `"${prefix}" is a file in this batch` };
    let kind = kinds.get(prefix);
    if (kind === undefined) {
      kind = kindAt(`${root}/${prefix}`);
      kinds.set(prefix, kind);
    }
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
