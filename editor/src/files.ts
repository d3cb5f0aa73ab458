import type { ProjectFiles } from '@preview/tiers';

/** A node of the file tree: a folder (with children) or a file. Paths are `/`-separated, no leading `/`. */
export interface TreeNode {
  name: string;
  path: string;
  folder: boolean;
  children: TreeNode[];
}

/**
 * The tree of `paths` plus the (possibly empty) `folders`: folders first, then files, each by name.
 */
export function buildTree(paths: Iterable<string>, folders: Iterable<string> = []): TreeNode[] {
  const root: TreeNode = { name: '', path: '', folder: true, children: [] };
  const folderAt = (path: string): TreeNode => {
    let node = root;
    if (!path) return node;
    let at = '';
    for (const part of path.split('/')) {
      at = at ? `${at}/${part}` : part;
      let next = node.children.find((c) => c.folder && c.name === part);
      if (!next) {
        next = { name: part, path: at, folder: true, children: [] };
        node.children.push(next);
      }
      node = next;
    }
    return node;
  };
  for (const f of folders) folderAt(f);
  for (const p of paths) {
    const i = p.lastIndexOf('/');
    folderAt(i < 0 ? '' : p.slice(0, i)).children.push({
      name: p.slice(i + 1),
      path: p,
      folder: false,
      children: [],
    });
  }
  const sort = (n: TreeNode) => {
    n.children.sort((a, b) => (a.folder === b.folder ? a.name.localeCompare(b.name) : a.folder ? -1 : 1));
    for (const c of n.children) sort(c);
  };
  sort(root);
  return root.children;
}

/**
 * Checks a path typed by the user: relative, `/`-separated, no `.`/`..` segment, no empty segment.
 * @returns the problem, or undefined when the path is fine
 */
export function pathProblem(path: string): string | undefined {
  if (!path) return 'path: must not be empty';
  if (path.startsWith('/')) return 'path: must be relative (no leading /)';
  if (path.split('/').some((s) => s === '' || s === '.' || s === '..'))
    return 'path: no empty, "." or ".." segments';
  if (path.length > 512) return 'path: at most 512 characters';
  return undefined;
}

/** Paths of `files` under `path` (the file itself, or every file inside the folder `path`). */
export function pathsUnder(files: Iterable<string>, path: string): string[] {
  return [...files].filter((p) => p === path || p.startsWith(`${path}/`));
}

/** The file's text for the editor (base64 files are shown decoded when they are UTF-8). */
export function textOf(v: ProjectFiles[string] | undefined): string {
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  if (v.encoding === 'utf8') return v.content;
  const bin = atob(v.content);
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

/** The file to open first in a project: the app's main component or entry, else the first file. */
export function firstFile(paths: string[]): string | undefined {
  const prefer = [
    /^src\/App\.(tsx|jsx|vue|ts|js)$/,
    /^src\/main\.(tsx|jsx|ts|js)$/,
    /^app\/page\.(tsx|jsx)$/,
    /^(src\/)?(server|index)\.(ts|js)$/,
    /^index\.html$/,
  ];
  for (const re of prefer) {
    const hit = paths.find((p) => re.test(p));
    if (hit) return hit;
  }
  return [...paths].sort()[0];
}
