import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A project's files as the router takes them: text, or base64 for binary files. */
export type ScaffoldFiles = Record<string, string | { content: string; encoding: 'base64' }>;

/** The host's CA bundle: npm reaches the registry through this machine's TLS-intercepting proxy with it. */
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';

/**
 * create-vite's templates, fetched with `npm pack create-vite` from the npm registry into a
 * temporary folder at test time (never committed): apps we did not write.
 * - `template(name)`: `template-<name>` as a project's files; binary files base64 (or left out with
 *   `{ textOnly: true }`), `_gitignore` as `.gitignore`.
 * - `remove()`: deletes the folder.
 * @throws the `npm pack` / `tar` error when the registry cannot be reached
 */
export function packCreateVite(): {
  template(name: string, options?: { textOnly?: boolean }): ScaffoldFiles;
  remove(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'create-vite-'));
  try {
    const tgz = execFileSync('npm', ['pack', 'create-vite', '--silent'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, ...(existsSync(HOST_CA) ? { NODE_EXTRA_CA_CERTS: HOST_CA } : {}) },
    }).trim();
    execFileSync('tar', ['xzf', tgz], { cwd: dir });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    template(name, options = {}) {
      const root = join(dir, 'package', `template-${name}`);
      const files: ScaffoldFiles = {};
      const walk = (rel: string) => {
        for (const entry of readdirSync(join(root, rel))) {
          const path = rel ? `${rel}/${entry}` : entry;
          if (statSync(join(root, path)).isDirectory()) {
            walk(path);
            continue;
          }
          const bytes = readFileSync(join(root, path));
          const text = bytes.toString('utf8');
          const isText = Buffer.from(text, 'utf8').equals(bytes);
          if (!isText && options.textOnly) continue;
          files[path === '_gitignore' ? '.gitignore' : path] = isText
            ? text
            : { content: bytes.toString('base64'), encoding: 'base64' };
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
