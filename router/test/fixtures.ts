import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { ProjectFiles } from '@preview/tiers';

export const FIXTURES = ['vite-vanilla', 'react-app', 'express-pg', 'next-app', 'native-deps'] as const;

/** A fixture project under router/test/fixtures as ProjectFiles. */
export function loadFixture(name: (typeof FIXTURES)[number]): ProjectFiles {
  const root = join(import.meta.dirname, 'fixtures', name);
  const out: ProjectFiles = {};
  const walk = (dir: string) => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(root, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(root);
  return out;
}
