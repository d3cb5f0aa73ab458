import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

const packages = [
  'tiers',
  'db-isolation',
  'pool-agent',
  'router',
  'cli',
  'browser-runtime',
  'editor',
  'docker/preview-daemon',
  'bench',
  'scripts',
];

/** Test files under `dir` (relative to it), outside node_modules. */
function testFiles(dir: string, root = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name === 'node_modules' || e.name.startsWith('.')) return [];
    const path = join(dir, e.name);
    if (e.isDirectory()) return testFiles(path, root);
    return e.name.endsWith('.test.ts') && !e.name.endsWith('.case.test.ts') ? [relative(root, path)] : [];
  });
}

/**
 * The files of a package that drive Chromium: they run one at a time, after all others. Chromium
 * aborts page loads in flight when it sees the host's network change (`ERR_NETWORK_CHANGED`), which
 * runs with many files starting and removing containers at once met most; what is left of it (a
 * file's own containers) `launchChromium` recovers from by loading the page again.
 */
const chromium = (dir: string) =>
  testFiles(dir).filter((f) => readFileSync(join(dir, f), 'utf8').includes('launchChromium('));

/**
 * Test files that run at once outside the Chromium group. Most wait on containers, Postgres and
 * child processes rather than on the 2 cores of the machine the suite is sized for: with this
 * split, `npm ci && npm test` from a fresh clone took 13–14 min there instead of 28–33 (one at a time).
 */
const PARALLEL_FILES = 3;

export default defineConfig({
  test: {
    projects: packages.flatMap((dir): TestProjectInlineConfiguration[] => {
      const browser = chromium(dir);
      return [
        {
          extends: true,
          test: {
            name: dir,
            root: dir,
            include: ['**/*.test.ts'],
            exclude: ['**/node_modules/**', '**/*.case.test.ts', ...browser],
            maxWorkers: PARALLEL_FILES,
            sequence: { groupOrder: 0 },
          },
        },
        ...(browser.length > 0
          ? [
              {
                extends: true as const,
                test: {
                  name: `${dir} (chromium)`,
                  root: dir,
                  include: browser,
                  maxWorkers: 1,
                  sequence: { groupOrder: 1 },
                },
              },
            ]
          : []),
      ];
    }),
    testTimeout: 60_000,
    hookTimeout: 120_000,
    passWithNoTests: false,
  },
});
