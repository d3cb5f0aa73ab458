import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { packageJsonHash } from './deps.ts';

function hashOf(pkg: unknown): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'deps-'));
  writeFileSync(join(dir, 'package.json'), typeof pkg === 'string' ? pkg : JSON.stringify(pkg, null, 2));
  return packageJsonHash(dir);
}

it('hashes only what npm installs: name, scripts and key order do not matter', () => {
  const base = { name: 'a', scripts: { dev: 'vite' }, dependencies: { react: '^19', 'react-dom': '^19' } };
  const renamed = { dependencies: { 'react-dom': '^19', react: '^19' }, name: 'my-app', version: '2.0.0' };
  expect(hashOf(base)).toBe(hashOf(renamed));
});

it('changes when a dependency, its range or its kind changes', () => {
  const a = hashOf({ dependencies: { react: '^19' } });
  expect(hashOf({ dependencies: { react: '^18' } })).not.toBe(a);
  expect(hashOf({ devDependencies: { react: '^19' } })).not.toBe(a);
  expect(hashOf({ dependencies: { react: '^19', zod: '^4' } })).not.toBe(a);
  expect(hashOf({ dependencies: { react: '^19' }, overrides: { x: '1' } })).not.toBe(a);
});

it('falls back to the raw bytes for an unparsable package.json, and undefined when absent', () => {
  expect(hashOf('{ not json')).toMatch(/^[0-9a-f]{64}$/);
  expect(hashOf('{ not json')).not.toBe(hashOf('{ not json!'));
  expect(packageJsonHash(mkdtempSync(join(tmpdir(), 'deps-')))).toBeUndefined();
});
