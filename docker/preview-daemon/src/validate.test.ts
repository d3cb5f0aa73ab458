import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FileOp, LIMITS } from '@preview/tiers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { scanProject } from './project-scan.ts';
import { validateOps } from './validate.ts';
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
