import { LIMITS } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { fileContent, isSkipped, type PickedFile, pickedFromDirectory, projectFromFolder } from './folder.ts';

const file = (path: string, text: string | Uint8Array, size?: number): PickedFile => {
  const bytes = typeof text === 'string' ? new TextEncoder().encode(text) : text;
  return {
    path,
    size: size ?? bytes.length,
    read: async () => {
      if (size !== undefined && size > LIMITS.fileBytes) throw new Error(`${path} was read`);
      return bytes;
    },
  };
};

describe('a project from a picked folder', () => {
  it('skips node_modules and .git at any depth, keeps text as text and binary as base64', async () => {
    const r = await projectFromFolder([
      file('package.json', '{"name":"x"}'),
      file('src/App.jsx', 'export default 1'),
      file('node_modules/react/index.js', 'nope'),
      file('packages/a/node_modules/b.js', 'nope'),
      file('.git/HEAD', 'ref'),
      file('logo.png', new Uint8Array([0x89, 0x50, 0, 0xff])),
    ]);
    expect(r.problems).toEqual([]);
    expect(r.skipped).toBe(3);
    expect(r.files).toEqual({
      'package.json': '{"name":"x"}',
      'src/App.jsx': 'export default 1',
      'logo.png': { content: btoa(String.fromCharCode(0x89, 0x50, 0, 0xff)), encoding: 'base64' },
    });
  });

  it('refuses paths and sizes with the router’s rules, naming the path and the rule, without reading', async () => {
    const r = await projectFromFolder([
      file('ok.js', 'ok'),
      file('big.bin', 'x', LIMITS.fileBytes + 1),
      file('a\\b.js', 'x'),
      file(`${'d/'.repeat(LIMITS.pathDepth)}x.js`, 'x'),
    ]);
    expect(r.problems).toEqual([
      `big.bin: file too large: ${LIMITS.fileBytes + 1} bytes (rule file_size)`,
      'a\\b.js: must not contain a backslash (rule backslash)',
      `${'d/'.repeat(LIMITS.pathDepth)}x.js: must be at most ${LIMITS.pathDepth} levels deep (rule too_deep)`,
    ]);
  });

  it('an empty folder (or only node_modules) is refused', async () => {
    const r = await projectFromFolder([file('node_modules/x.js', 'x')]);
    expect(r.problems).toEqual(['folder: no files to import (rule empty)']);
  });

  it('isSkipped and fileContent', () => {
    expect(isSkipped('a/node_modules/b')).toBe(true);
    expect(isSkipped('a/node_modules_x/b')).toBe(false);
    expect(fileContent(new TextEncoder().encode('héllo'))).toBe('héllo');
    expect(fileContent(new Uint8Array([0xc3]))).toEqual({ content: 'ww==', encoding: 'base64' });
  });
});

describe('the File System Access path (showDirectoryPicker)', () => {
  /** A directory handle as the API hands it out, over an in-memory tree. */
  type Tree = { [name: string]: string | Tree };
  const handle = (name: string, tree: Tree): Parameters<typeof pickedFromDirectory>[0] => ({
    kind: 'directory',
    name,
    async *values() {
      for (const [n, v] of Object.entries(tree))
        yield typeof v === 'string'
          ? { kind: 'file' as const, name: n, getFile: async () => new File([v], n) }
          : handle(n, v);
    },
  });

  it('walks the folder without descending into node_modules or .git; paths are relative to it', async () => {
    const r = await pickedFromDirectory(
      handle('app', {
        'index.html': '<h1>x</h1>',
        src: { 'main.js': 'main', lib: { 'a.js': 'a' }, node_modules: { 'x.js': 'no' } },
        node_modules: { react: { 'index.js': 'no' } },
        '.git': { HEAD: 'ref' },
      }),
    );
    expect(r.skipped).toBe(3);
    expect(r.picked.map((f) => f.path).sort()).toEqual(['index.html', 'src/lib/a.js', 'src/main.js']);
    const project = await projectFromFolder(r.picked);
    expect(project.files).toEqual({ 'index.html': '<h1>x</h1>', 'src/lib/a.js': 'a', 'src/main.js': 'main' });
  });
});
