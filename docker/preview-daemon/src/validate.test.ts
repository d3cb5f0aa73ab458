import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FileOp, LIMITS } from '@preview/tiers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { scanProject } from './project-scan.ts';
import { ProjectView, validateOps } from './validate.ts';
import { ProjectWriter } from './writer.ts';

let root: string;
let outside: string;
const limits = { maxFiles: 10, maxBytes: 1000 };

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'daemon-validate-'));
  outside = mkdtempSync(join(tmpdir(), 'daemon-outside-'));
  mkdirSync(join(root, 'src'));
  writeFileSync(join(root, 'src/a.js'), 'a');
  writeFileSync(join(root, 'file'), 'f');
  symlinkSync(outside, join(root, 'link'));
  symlinkSync(join(outside, 'target.js'), join(root, 'src/linked.js'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const put = (path: string, content = 'x'): FileOp => ({ op: 'put', path, content, encoding: 'utf8' });

describe('validateOps', () => {
  it.each([
    ['absolute', put('/etc/passwd')],
    ['traversal', put('src/../../x')],
    ['nul', put('src/a\u0000.js')],
    ['backslash', put('src\\a.js')],
    ['too_deep', put(`${Array.from({ length: LIMITS.pathDepth + 1 }, () => 'd').join('/')}`)],
    ['symlink', put('link/x.js')],
    ['symlink', put('src/linked.js')],
    ['symlink', { op: 'delete', path: 'link' } as FileOp],
    ['symlink', { op: 'rename', from: 'src/a.js', to: 'link/a.js' } as FileOp],
    ['not_a_directory', put('file/x.js')],
    ['is_directory', put('src')],
    ['reserved', put('node_modules/x.js')],
    ['reserved', put('.preview-tmp/x')],
  ])('rejects rule %s', (rule, op) => {
    const v = validateOps(root, [put('ok.js'), op], scanProject(root), limits);
    expect(v?.rule).toBe(rule);
  });

  it('names the offending path', () => {
    const v = validateOps(root, [put('link/deep/x.js')], scanProject(root), limits);
    expect(v).toMatchObject({ path: 'link/deep/x.js', rule: 'symlink' });
    expect(v?.message).toContain('"link"');
  });

  it('rejects a file that is too big', () => {
    const v = validateOps(root, [put('big.js', 'x'.repeat(LIMITS.fileBytes + 1))], scanProject(root), {
      maxFiles: 10,
      maxBytes: LIMITS.projectBytes,
    });
    expect(v).toMatchObject({ path: 'big.js', rule: 'file_size' });
  });

  it('counts files and bytes across the batch, deletes included', () => {
    const index = scanProject(root);
    expect(index.files.size).toBe(2); // links are not files
    const nine = Array.from({ length: 8 }, (_, i) => put(`n${i}.js`));
    expect(validateOps(root, nine, index, limits)).toBeUndefined();
    expect(validateOps(root, [...nine, put('one-more.js')], index, limits)?.rule).toBe('too_many_files');
    expect(
      validateOps(root, [{ op: 'delete', path: 'file' }, ...nine, put('one-more.js')], index, limits),
    ).toBeUndefined();
    expect(validateOps(root, [put('fat.js', 'x'.repeat(999))], index, limits)?.rule).toBe('project_size');
  });

  it('refuses a path below a file put earlier in the same batch', () => {
    expect(validateOps(root, [put('new'), put('new/x.js')], scanProject(root), limits)?.rule).toBe(
      'not_a_directory',
    );
  });
});

describe('ProjectWriter', () => {
  it('writes, renames and deletes, small batches synchronously and large ones in parallel', async () => {
    const index = scanProject(root);
    const w = new ProjectWriter(root, index);
    w.applySync([
      put('src/new/deep.js', 'deep'),
      { op: 'rename', from: 'src/a.js', to: 'src/b.js' },
      { op: 'delete', path: 'file' },
    ]);
    expect(readFileSync(join(root, 'src/new/deep.js'), 'utf8')).toBe('deep');
    expect(readFileSync(join(root, 'src/b.js'), 'utf8')).toBe('a');
    expect(index.files.has('src/a.js')).toBe(false);
    expect(index.files.has('file')).toBe(false);
    const many = Array.from({ length: 40 }, (_, i) => put(`many/f${i}.js`, `v${i}`));
    expect(w.isSmall(many)).toBe(false);
    await w.apply([...many, put('many/f0.js', 'last wins'), { op: 'delete', path: 'many/f1.js' }]);
    expect(readFileSync(join(root, 'many/f0.js'), 'utf8')).toBe('last wins');
    expect(() => readFileSync(join(root, 'many/f1.js'))).toThrow();
    expect(index.files.size).toBe(scanProject(root).files.size);
    expect(index.bytes).toBe(scanProject(root).bytes);
    // base64 content is decoded
    w.applySync([
      { op: 'put', path: 'bin', content: Buffer.from([0, 1, 2]).toString('base64'), encoding: 'base64' },
    ]);
    expect([...readFileSync(join(root, 'bin'))]).toEqual([0, 1, 2]);
  });
});

/** The project's files and their contents, as the disk has them (links and the daemon's dir left out). */
function tree(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.name === '.preview-tmp' || e.isSymbolicLink()) continue;
    if (e.isDirectory()) Object.assign(out, tree(dir, p));
    else out[p] = readFileSync(join(dir, p), 'utf8');
  }
  return out;
}

describe('multi-op batches are validated against the disk as the batch changes it', () => {
  beforeEach(() => {
    mkdirSync(join(root, 'a'));
    writeFileSync(join(root, 'a/x.js'), 'old x');
    writeFileSync(join(root, 'a/y.js'), 'old y');
    mkdirSync(join(root, 'd'));
    symlinkSync(outside, join(root, 'd/link'));
  });
  const del = (path: string): FileOp => ({ op: 'delete', path });
  const mv = (from: string, to: string): FileOp => ({ op: 'rename', from, to });
  const big = { maxFiles: 100, maxBytes: 100_000 };

  it.each<[string, FileOp[], Record<string, string | undefined>]>([
    [
      'delete folder a, put a/x.js',
      [del('a'), put('a/x.js', 'new x')],
      { 'a/x.js': 'new x', 'a/y.js': undefined },
    ],
    ['delete file, put a folder there', [del('file'), put('file/x.js', 'fx')], { 'file/x.js': 'fx' }],
    ['delete folder a, put file a', [del('a'), put('a', 'a file')], { a: 'a file', 'a/x.js': undefined }],
    ['put in a folder, delete it, put a file there', [put('a/z.js'), del('a'), put('a', 'A')], { a: 'A' }],
    ['rename folder a to b, put file a', [mv('a', 'b'), put('a', 'A')], { a: 'A', 'b/x.js': 'old x' }],
    [
      'delete folder src, rename folder a onto src',
      [del('src'), mv('a', 'src')],
      { 'src/y.js': 'old y', 'src/a.js': undefined },
    ],
    ['rename file onto a deleted folder', [del('a'), mv('file', 'a')], { a: 'f' }],
    [
      'rename a folder twice and write into it',
      [mv('a', 'b'), mv('b', 'c/d'), put('c/d/z.js', 'z')],
      { 'c/d/x.js': 'old x', 'c/d/z.js': 'z' },
    ],
    [
      'put into a new folder, then rename it',
      [put('n/m.js', 'm'), mv('n', 'o'), put('n', 'N')],
      { 'o/m.js': 'm', n: 'N' },
    ],
  ])('accepts and applies: %s', async (_name, ops, expected) => {
    expect(validateOps(root, ops, scanProject(root), big)).toBeUndefined();
    // The writer gives the disk the validator's model predicted, synchronously and not.
    const copy = mkdtempSync(join(tmpdir(), 'daemon-validate-copy-'));
    try {
      cpSync(root, copy, { recursive: true, verbatimSymlinks: true });
      const index = scanProject(root);
      new ProjectWriter(root, index).applySync(ops);
      await new ProjectWriter(copy, scanProject(copy)).apply(ops);
      const after = tree(root);
      expect(tree(copy)).toEqual(after);
      for (const [p, content] of Object.entries(expected)) expect(after[p], p).toBe(content);
      expect(index.files.size).toBe(scanProject(root).files.size);
      expect(index.bytes).toBe(scanProject(root).bytes);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it.each<[string, FileOp[], string, string]>([
    ['a folder with other files is still a folder', [del('a/x.js'), put('a')], 'a', 'is_directory'],
    [
      'a file put in the batch is not a folder',
      [del('a'), put('a'), put('a/x.js')],
      'a/x.js',
      'not_a_directory',
    ],
    ['a renamed folder keeps its links', [mv('d', 'e'), put('e/link/x.js')], 'e/link/x.js', 'symlink'],
    [
      'a file renamed onto a path is a file there',
      [mv('file', 'g'), put('g/x.js')],
      'g/x.js',
      'not_a_directory',
    ],
    ['a folder renamed onto a path is a folder there', [mv('a', 'b'), put('b')], 'b', 'is_directory'],
    [
      'a folder cannot move onto a file',
      [del('src'), put('src', 'f'), mv('a', 'src')],
      'src',
      'not_a_directory',
    ],
  ])('still refuses: %s', (_name, ops, path, rule) => {
    expect(validateOps(root, ops, scanProject(root), big)).toMatchObject({ path, rule });
  });

  it('counts a deleted or renamed folder with everything in it', () => {
    const index = scanProject(root); // src/a.js, file, a/x.js, a/y.js
    const limit = { maxFiles: 4, maxBytes: 100_000 };
    expect(validateOps(root, [put('n1'), put('n2')], index, limit)?.rule).toBe('too_many_files');
    expect(validateOps(root, [del('a'), put('n1'), put('n2')], index, limit)).toBeUndefined();
    expect(validateOps(root, [mv('a', 'b'), del('b'), put('n1'), put('n2')], index, limit)).toBeUndefined();
    expect(validateOps(root, [mv('a', 'b'), put('n1')], index, limit)?.rule).toBe('too_many_files');
    // 12 bytes before: the folder's 10 go with it.
    const bytes = { maxFiles: 9, maxBytes: 12 };
    expect(validateOps(root, [put('fat', 'x'.repeat(10))], index, bytes)?.rule).toBe('project_size');
    expect(validateOps(root, [del('a'), put('fat', 'x'.repeat(10))], index, bytes)).toBeUndefined();
  });
});

describe('ProjectView: batches checked one after another before any is written', () => {
  it('checks each batch on the project as the accepted batches before it leave it', () => {
    const index = scanProject(root); // src/a.js, file
    const limit = { maxFiles: 4, maxBytes: 1000 };
    let view = ProjectView.of(root, index);
    const check = (ops: FileOp[]) => {
      const next = view.fork();
      const v = validateOps(root, ops, index, limit, next);
      if (!v) view = next;
      return v?.rule;
    };
    expect(check([put('dir/x.js')])).toBeUndefined();
    // `dir` is a folder now (nothing is on disk yet): a file there is refused.
    expect(check([put('dir')])).toBe('is_directory');
    // Four files with dir/x.js; a refused batch leaves nothing behind in the view.
    expect(check([put('n1'), put('n2')])).toBe('too_many_files');
    expect(check([put('n1')])).toBeUndefined();
    expect(check([put('n2')])).toBe('too_many_files');
    expect(check([{ op: 'delete', path: 'dir' }, put('n2')])).toBeUndefined();
    expect(readdirSync(root).sort()).toEqual(['file', 'link', 'src']);
  });
});
