import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

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

export default defineConfig({
  test: {
    projects: packages.map((dir) => ({
      extends: true,
      test: {
        name: dir,
        root: dir,
        include: ['**/*.test.ts'],
        exclude: ['**/node_modules/**', '**/*.case.test.ts'],
      },
    })),
    // Most test files wait on containers, Chromium and Postgres rather than on this process: more
    // files than cores at once (Vitest's default is cores - 1, one file at a time on a 2-core
    // machine). Measured on a 2-core machine: the whole run 22.7 → 18.0 min, every test passing.
    maxWorkers: Math.max(3, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 120_000,
    passWithNoTests: false,
  },
});
