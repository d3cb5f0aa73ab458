import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..');

it('npm test runs lint and typecheck before the tests', async () => {
  const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8'));
  expect(pkg.scripts.test).toMatch(/^npm run lint && npm run typecheck && /);
});

it('a lint error and a type error each fail their step', async () => {
  const dir = await mkdtemp(join(repo, 'node_modules', '.lint-probe-'));
  try {
    await writeFile(join(dir, 'bad.ts'), 'export const x: number = "nope";\nif (x == 1) { debugger; }\n');
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: '../../tsconfig.base.json',
        compilerOptions: { noEmit: true, composite: false },
        include: ['bad.ts'],
      }),
    );
    const lint = await run('npx', ['biome', 'lint', '--vcs-use-ignore-file=false', join(dir, 'bad.ts')], {
      cwd: repo,
    }).catch((e) => e);
    expect(lint.code).not.toBe(0);
    const tsc = await run('npx', ['tsc', '-p', dir], { cwd: repo }).catch((e) => e);
    expect(tsc.code).not.toBe(0);
    expect(String(tsc.stdout)).toMatch(/TS2322/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
