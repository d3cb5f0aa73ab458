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
    testTimeout: 60_000,
    hookTimeout: 120_000,
    passWithNoTests: false,
  },
});
