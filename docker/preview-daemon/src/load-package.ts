import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Imports a package as the project would see it (its node_modules, then upward), not from the
 * daemon's bundle: the dev server's version is the project's choice.
 */
export async function importFromProject<T>(projectDir: string, name: string): Promise<T> {
  const dir = packageDir(projectDir, name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
    exports?: unknown;
    module?: string;
    main?: string;
  };
  const entry = esmEntry(pkg.exports) ?? pkg.module ?? pkg.main ?? 'index.js';
  return (await import(pathToFileURL(join(dir, entry)).href)) as T;
}

/** The installed directory of `name` as resolved from `projectDir`. */
export function packageDir(projectDir: string, name: string): string {
  // Node's own lookup order (node_modules of each ancestor); works for packages whose `exports`
  // do not list ./package.json.
  let dir = projectDir;
  for (;;) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new Error(`package ${name} is not installed for ${projectDir}`);
    dir = up;
  }
}

function esmEntry(exports: unknown): string | undefined {
  if (typeof exports === 'string') return exports;
  if (!exports || typeof exports !== 'object') return undefined;
  const dot = (exports as Record<string, unknown>)['.'] ?? exports;
  if (typeof dot === 'string') return dot;
  if (dot && typeof dot === 'object') {
    const d = dot as Record<string, unknown>;
    for (const k of ['import', 'node', 'default']) {
      const v = d[k];
      if (typeof v === 'string') return v;
      const nested = esmEntry(v);
      if (nested) return nested;
    }
  }
  return undefined;
}
