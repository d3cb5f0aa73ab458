import { describe, expect, it } from 'vitest';
import { buildTree, firstFile, pathProblem, pathsUnder, textOf } from './files.ts';

describe('the file tree', () => {
  it('nests paths under their folders, folders first then files by name, empty folders kept', () => {
    const tree = buildTree(['src/main.js', 'index.html', 'src/a/b.js', 'README.md'], ['src/empty', 'docs']);
    expect(tree.map((n) => `${n.folder ? 'd' : 'f'}:${n.path}`)).toEqual([
      'd:docs',
      'd:src',
      'f:index.html',
      'f:README.md',
    ]);
    const src = tree.find((n) => n.path === 'src')!;
    expect(src.children.map((n) => `${n.folder ? 'd' : 'f'}:${n.path}`)).toEqual([
      'd:src/a',
      'd:src/empty',
      'f:src/main.js',
    ]);
    expect(src.children[0]!.children.map((n) => n.path)).toEqual(['src/a/b.js']);
  });

  it('checks typed paths, naming the field and the rule', () => {
    expect(pathProblem('src/x.js')).toBeUndefined();
    expect(pathProblem('')).toBe('path: must not be empty');
    expect(pathProblem('/etc/passwd')).toBe('path: must be relative (no leading /)');
    expect(pathProblem('src/../x')).toBe('path: no empty, "." or ".." segments');
    expect(pathProblem('src//x')).toBe('path: no empty, "." or ".." segments');
    expect(pathProblem('a'.repeat(513))).toBe('path: at most 512 characters');
  });

  it('finds a file or every file of a folder (not a sibling with the same prefix)', () => {
    const files = ['src/a.js', 'src/b/c.js', 'srcx/d.js'];
    expect(pathsUnder(files, 'src')).toEqual(['src/a.js', 'src/b/c.js']);
    expect(pathsUnder(files, 'src/a.js')).toEqual(['src/a.js']);
  });

  it('opens the main component first, else the entry, else the first path', () => {
    expect(firstFile(['index.html', 'src/main.jsx', 'src/App.jsx'])).toBe('src/App.jsx');
    expect(firstFile(['index.html', 'src/main.js'])).toBe('src/main.js');
    expect(firstFile(['package.json', 'server.js'])).toBe('server.js');
    expect(firstFile(['b.txt', 'a.txt'])).toBe('a.txt');
    expect(firstFile([])).toBeUndefined();
  });

  it('shows base64 UTF-8 content as text', () => {
    expect(textOf('plain')).toBe('plain');
    expect(textOf({ content: Buffer.from('héllo').toString('base64'), encoding: 'base64' })).toBe('héllo');
    expect(textOf({ content: 'u', encoding: 'utf8' })).toBe('u');
    expect(textOf(undefined)).toBe('');
  });
});
