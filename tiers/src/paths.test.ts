import { describe, expect, it } from 'vitest';
import { InvalidInputError } from './errors.ts';
import { assertValidPath, pathProblem, utf8Length } from './paths.ts';

describe('pathProblem', () => {
  it.each([
    ['index.html'],
    ['src/App.tsx'],
    ['public/img/logo.svg'],
    ['.env.local'],
    ['src/ünïcode/файл.ts'],
  ])('accepts %s', (p) => {
    expect(pathProblem(p)).toBeUndefined();
  });

  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'absolute'],
    ['C:/x', 'absolute'],
    ['../x', 'traversal'],
    ['a/../../x', 'traversal'],
    ['a/./b', 'not_normalised'],
    ['a//b', 'not_normalised'],
    ['a/', 'not_normalised'],
    ['a\\b', 'backslash'],
    ['a\u0000b', 'nul'],
    ['a\nb', 'control_char'],
    ['node_modules/x/index.js', 'reserved'],
    ['.git/config', 'reserved'],
    [`${'a/'.repeat(30)}x`, 'too_deep'],
    ['x'.repeat(600), 'too_long'],
  ])('rejects %j with rule %s', (p, rule) => {
    expect(pathProblem(p)?.rule).toBe(rule);
  });

  it('assertValidPath names the field and rule', () => {
    expect(() => assertValidPath('../x', 'ops[2].path')).toThrow(InvalidInputError);
    expect(() => assertValidPath('../x', 'ops[2].path')).toThrow(/ops\[2\]\.path: .*traversal/);
  });

  it('utf8Length matches Buffer.byteLength', () => {
    for (const s of ['', 'abc', 'é', '€', '😀', 'a😀b€é']) expect(utf8Length(s)).toBe(Buffer.byteLength(s));
  });
});
