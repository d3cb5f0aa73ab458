import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { functionLengths, longFunctions, MAX_FUNCTION_LINES } from './function-length.ts';

/**
 * Issue 12: no production function (any package's `src/`, tests excluded) is longer than
 * MAX_FUNCTION_LINES lines. The failure lists each offender with its file, line and length.
 */
const REPO = resolve(import.meta.dirname, '..');

describe('function length', () => {
  it(`no production function is longer than ${MAX_FUNCTION_LINES} lines`, async () => {
    const long = await longFunctions(REPO);
    expect(long.map((f) => `${f.file}:${f.line} ${f.name} (${f.lines} lines)`)).toEqual([]);
  });
});

describe('the checker', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  const body = (n: number) => Array.from({ length: n }, (_, i) => `  const v${i} = ${i};`).join('\n');

  it('measures functions, arrows, methods and nested functions from first to last line', () => {
    const text = [
      '/** doc comments do not count */',
      'export function outer() {',
      '  const inner = () => {',
      '    return 1;',
      '  };',
      '  return inner;',
      '}',
      'class A {',
      '  m() {',
      '    return 2;',
      '  }',
      '}',
      'export const f = async function () {};',
    ].join('\n');
    expect(functionLengths('x.ts', text).map((f) => [f.name, f.line, f.lines])).toEqual([
      ['outer', 2, 6],
      ['inner', 3, 3],
      ['A.m', 9, 3],
      ['f', 13, 1],
    ]);
  });

  it('finds a long function under a src/ folder, and leaves tests and short ones alone', async () => {
    const root = await mkdtemp(join(tmpdir(), 'function-length-'));
    dirs.push(root);
    await mkdir(join(root, 'pkg/src/deep'), { recursive: true });
    await writeFile(join(root, 'pkg/src/deep/long.ts'), `export function tooLong() {\n${body(200)}\n}\n`);
    await writeFile(join(root, 'pkg/src/fits.ts'), `export function fits() {\n${body(198)}\n}\n`);
    await writeFile(join(root, 'pkg/src/long.test.ts'), `export function longTest() {\n${body(300)}\n}\n`);
    const found = await longFunctions(root, { packages: ['pkg'] });
    expect(found.map((f) => [f.file, f.name, f.lines])).toEqual([['pkg/src/deep/long.ts', 'tooLong', 202]]);
  });
});
