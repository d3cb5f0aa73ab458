import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProjectFiles } from '@preview/tiers';

/**
 * create-vite's templates, fetched with `npm pack create-vite` (the npm registry) into a temporary
 * folder: never committed. `template(name)` is `template-<name>` as a project's files (binary files
 * base64, `_gitignore` as `.gitignore`); `remove()` deletes the folder.
 */
export function packCreateVite(): { template(name: string): ProjectFiles; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'create-vite-'));
  try {
    const tgz = execFileSync('npm', ['pack', 'create-vite', '--silent'], {
      cwd: dir,
      encoding: 'utf8',
    }).trim();
    execFileSync('tar', ['xzf', tgz], { cwd: dir });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    template(name) {
      const root = join(dir, 'package', `template-${name}`);
      const files: ProjectFiles = {};
      const walk = (rel: string) => {
        for (const entry of readdirSync(join(root, rel))) {
          const path = rel ? `${rel}/${entry}` : entry;
          if (statSync(join(root, path)).isDirectory()) walk(path);
          else {
            const bytes = readFileSync(join(root, path));
            const text = bytes.toString('utf8');
            files[path === '_gitignore' ? '.gitignore' : path] = Buffer.from(text, 'utf8').equals(bytes)
              ? text
              : { content: bytes.toString('base64'), encoding: 'base64' };
          }
        }
      };
      walk('');
      return files;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
