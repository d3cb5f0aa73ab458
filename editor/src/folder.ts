import { contentBytes, LIMITS, type ProjectFiles, pathProblem } from '@preview/tiers';

/** A file picked from a folder: its path relative to the folder and a way to read its bytes. */
export interface PickedFile {
  /** `/`-separated, relative to the picked folder (its own name not included). */
  path: string;
  /** Size in bytes, as the browser reports it (checked before reading). */
  size: number;
  read(): Promise<Uint8Array>;
}

/** Folders never imported, wherever they are in the tree (installed packages, git's store). */
export const SKIPPED_DIRS: readonly string[] = ['node_modules', '.git'];

/** What `projectFromFolder` made: the files, and what it left out or refused (path: reason). */
export interface FolderImport {
  files: ProjectFiles;
  /** Paths left out on purpose (inside `SKIPPED_DIRS`), counted, not listed. */
  skipped: number;
  /** Paths refused: each names the rule of `@preview/tiers` it breaks. */
  problems: string[];
}

/** Whether `path` lies inside one of `SKIPPED_DIRS` (at any depth). */
export function isSkipped(path: string): boolean {
  return path.split('/').some((s) => SKIPPED_DIRS.includes(s));
}

/**
 * UTF-8 text when the bytes are valid UTF-8 without NUL, else `{content, encoding: 'base64'}`.
 */
export function fileContent(bytes: Uint8Array): ProjectFiles[string] {
  if (!bytes.includes(0)) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      /* not UTF-8: base64 below */
    }
  }
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return { content: btoa(bin), encoding: 'base64' };
}

/**
 * The project files of a picked folder, with the router's own rules for a create (the same as
 * `ProjectFilesBody` in router/src/schemas.ts, from `@preview/tiers`): every path passes
 * `pathProblem`, each file is at most `LIMITS.fileBytes`, at most `LIMITS.projectFiles` files and
 * `LIMITS.projectBytes` in all. Files inside `node_modules/` or `.git/` are skipped (not read).
 * A file breaking a rule is not read; its path and rule go to `problems`, and the caller must not
 * create the project while there are any.
 */
export async function projectFromFolder(picked: Iterable<PickedFile>): Promise<FolderImport> {
  const files: ProjectFiles = {};
  const problems: string[] = [];
  let skipped = 0;
  let count = 0;
  let total = 0;
  for (const f of picked) {
    if (isSkipped(f.path)) {
      skipped++;
      continue;
    }
    const p = pathProblem(f.path);
    if (p) {
      problems.push(`${f.path}: ${p.message} (rule ${p.rule})`);
      continue;
    }
    if (f.size > LIMITS.fileBytes) {
      problems.push(`${f.path}: file too large: ${f.size} bytes (rule file_size)`);
      continue;
    }
    if (++count > LIMITS.projectFiles) {
      problems.push(`more than ${LIMITS.projectFiles} files (rule project_files)`);
      break;
    }
    const content = fileContent(await f.read());
    total += typeof content === 'string' ? contentBytes({ content }) : contentBytes(content);
    if (total > LIMITS.projectBytes) {
      problems.push(`project too large: over ${LIMITS.projectBytes} bytes (rule project_size)`);
      break;
    }
    files[f.path] = content;
  }
  if (!problems.length && count === 0) problems.push('folder: no files to import (rule empty)');
  return { files, skipped, problems };
}

/** The files of an `<input type=file webkitdirectory>`: paths without the folder's own name. */
export function pickedFromInput(list: FileList | readonly File[]): PickedFile[] {
  return [...list].map((file) => {
    const rel = file.webkitRelativePath || file.name;
    return {
      path: rel.includes('/') ? rel.slice(rel.indexOf('/') + 1) : rel,
      size: file.size,
      read: async () => new Uint8Array(await file.arrayBuffer()),
    };
  });
}

/** The handle `showDirectoryPicker` returns, as far as it is used here. */
interface DirectoryHandle {
  kind: 'directory';
  name: string;
  values(): AsyncIterable<DirectoryHandle | { kind: 'file'; name: string; getFile(): Promise<File> }>;
}

/**
 * The files under a File System Access directory handle, not descending into `SKIPPED_DIRS`
 * (counted in `skipped`: one per skipped folder).
 */
export async function pickedFromDirectory(
  root: DirectoryHandle,
): Promise<{ picked: PickedFile[]; skipped: number }> {
  const picked: PickedFile[] = [];
  let skipped = 0;
  const walk = async (dir: DirectoryHandle, prefix: string): Promise<void> => {
    for await (const entry of dir.values()) {
      const path = prefix + entry.name;
      if (entry.kind === 'directory') {
        if (SKIPPED_DIRS.includes(entry.name)) skipped++;
        else await walk(entry, `${path}/`);
      } else {
        const file = await entry.getFile();
        picked.push({ path, size: file.size, read: async () => new Uint8Array(await file.arrayBuffer()) });
      }
    }
  };
  await walk(root, '');
  return { picked, skipped };
}

/**
 * Asks the user for a folder with the File System Access API (`showDirectoryPicker`) when the
 * browser has it; `undefined` when it does not (use `<input type=file webkitdirectory>` then).
 * @throws DOMException `AbortError` when the user cancels
 */
export async function pickDirectory(): Promise<{ picked: PickedFile[]; skipped: number } | undefined> {
  const show = (globalThis as { showDirectoryPicker?: (o?: unknown) => Promise<DirectoryHandle> })
    .showDirectoryPicker;
  if (typeof show !== 'function') return undefined;
  return pickedFromDirectory(await show.call(globalThis, { mode: 'read' }));
}
