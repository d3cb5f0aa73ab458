import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ensureDeps, installNeeded, packageJsonHash } from './deps.ts';

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

it("an install is needed only when npm must run: not for the template's dependencies without its lockfile", async () => {
  const root = mkdtempSync(join(tmpdir(), 'deps-'));
  const templateDir = join(root, 'template');
  const projectDir = join(root, 'project');
  const pkg = { name: 'tpl', dependencies: { vue: '^3.5.0' }, devDependencies: { vite: '^7.0.0' } };
  mkdirSync(join(templateDir, 'node_modules', 'vue'), { recursive: true });
  writeFileSync(join(templateDir, 'package.json'), JSON.stringify(pkg));
  writeFileSync(join(templateDir, 'package-lock.json'), '{"lockfileVersion":3,"packages":{}}');
  mkdirSync(projectDir);
  const opts = {
    projectDir,
    templateDir,
    env: {},
    cacheLayers: [],
    onOutput: () => {},
    onInstalling: () => {
      throw new Error('npm would run');
    },
  };
  // A scaffold that restates the template's dependencies under its own name, with no lockfile.
  writeFileSync(join(projectDir, 'package.json'), JSON.stringify({ ...pkg, name: 'my-app' }));
  expect(installNeeded(opts)).toBe(false);
  // ... links the template's packages without npm, and then has nothing left to do.
  await ensureDeps(opts);
  expect(installNeeded(opts)).toBe(false);
  // Its own lockfile, another dependency, or another range of one: npm must run.
  writeFileSync(join(projectDir, 'package-lock.json'), '{"lockfileVersion":3}');
  expect(installNeeded(opts)).toBe(true);
  rmSync(join(projectDir, 'package-lock.json'));
  writeFileSync(
    join(projectDir, 'package.json'),
    JSON.stringify({ ...pkg, dependencies: { vue: '^3.5.0', ms: '2.1.3' } }),
  );
  expect(installNeeded(opts)).toBe(true);
  writeFileSync(
    join(projectDir, 'package.json'),
    JSON.stringify({ ...pkg, dependencies: { vue: '^3.4.0' } }),
  );
  expect(installNeeded(opts)).toBe(true);
  // No package.json: nothing to install.
  rmSync(join(projectDir, 'package.json'));
  expect(installNeeded(opts)).toBe(false);
  rmSync(root, { recursive: true, force: true });
});
