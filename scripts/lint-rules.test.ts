import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The repository's biome rule that keeps test code out of the product: a production file under a
 * package's `src/` that imports a testkit, a `test/` folder or a fake fails `npm run lint`; a test
 * file beside it may. Checked on probe files in a scratch copy of `biome.json`.
 */
const REPO = resolve(import.meta.dirname, '..');
const BIOME = join(REPO, 'node_modules/.bin/biome');
let dir: string;

async function lint(files: Record<string, string>): Promise<{ code: number; out: string }> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  try {
    const r = await promisify(execFile)(BIOME, ['lint', '--max-diagnostics=50', ...Object.keys(files)], {
      cwd: dir,
    });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lint-rules-'));
  const config = JSON.parse(await readFile(join(REPO, 'biome.json'), 'utf8')) as Record<string, unknown>;
  delete config['$schema'];
  config['vcs'] = { enabled: false };
  await writeFile(join(dir, 'biome.json'), JSON.stringify(config));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('lint: no test code in production files', () => {
  it.each([
    ['tiers/src/probe.ts', "import { startFakeMachinesApi } from '../testkit/fly/index.ts';"],
    ['router/src/sync/probe.ts', "import { startDirectorySandbox } from '../../test/sync/index.ts';"],
    ['pool-agent/src/probe.ts', "import { createTestRedis } from '@preview/testkit';"],
    ['router/src/probe.ts', "import { runTierContract } from '@preview/tiers/testkit/contract';"],
    ['docker/preview-daemon/src/probe.ts', "import { spawnDaemon } from '../test/helpers.ts';"],
    ['browser-runtime/src/probe.ts', "import { FakeWebContainer } from './fake-webcontainer.ts';"],
  ])('%s importing test code fails', async (path, line) => {
    const r = await lint({ [path]: `${line}\nexport const probe = [${line.split(/[{}]/)[1]}];\n` });
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/noRestrictedImports/);
  });

  it('a test file beside the code, and a production file importing product code, pass', async () => {
    const r = await lint({
      'tiers/src/probe.test.ts':
        "import { startFakeMachinesApi } from '../testkit/fly/index.ts';\nexport const probe = startFakeMachinesApi;\n",
      'tiers/src/probe-ok.ts': "import { LIMITS } from './limits.ts';\nexport const probe = LIMITS;\n",
    });
    expect(r.out).not.toMatch(/noRestrictedImports/);
    expect(r.code).toBe(0);
  });
});
