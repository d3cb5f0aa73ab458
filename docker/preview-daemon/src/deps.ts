import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { LogRing } from './log.ts';
import { TMP_DIR_NAME } from './validate.ts';

const MARKER = '.preview-deps-hash';

export interface DepsOptions {
  projectDir: string;
  /** The template's directory; its node_modules (when installed, as in the image) is shared read-only. */
  templateDir: string;
  env: Record<string, string>;
  log: LogRing;
  /** Called just before an install starts. */
  onInstalling: () => void;
  signal?: AbortSignal;
}

/** The package.json fields that decide what `npm install` puts in node_modules. */
const INSTALL_FIELDS = [
  'dependencies',
  'devDependencies',
  'optionalDependencies',
  'peerDependencies',
  'bundleDependencies',
  'overrides',
  'workspaces',
] as const;

/**
 * sha256 of what the project's package.json asks npm to install (the dependency fields, keys
 * sorted), or `undefined` when there is none. An edit to the name, scripts or formatting keeps
 * the hash, so a project that declares the template's dependencies keeps the warm node_modules;
 * an unparsable package.json hashes its raw bytes (npm will then report the syntax error).
 */
export function packageJsonHash(projectDir: string): string | undefined {
  let raw: Buffer;
  try {
    raw = readFileSync(join(projectDir, 'package.json'));
  } catch {
    return undefined;
  }
  const h = createHash('sha256');
  try {
    const pkg = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    for (const field of INSTALL_FIELDS) h.update(`${field}\0${canonicalJson(pkg[field])}\0`);
  } catch {
    h.update(raw);
  }
  return h.digest('hex');
}

function canonicalJson(v: unknown): string {
  if (v === undefined) return '';
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

/**
 * Makes the project's dependencies match its package.json, doing as little as possible:
 * - package.json equal to the template's and the template's node_modules installed (the image):
 *   `node_modules` becomes a link to it (nothing copied; the project volume stays small);
 * - a previous install for the same package.json hash: nothing;
 * - otherwise `npm install --prefer-offline` from the shared cache into the project.
 * Returns the hash the dependencies now match.
 */
export async function ensureDeps(opts: DepsOptions): Promise<string | undefined> {
  const hash = packageJsonHash(opts.projectDir);
  if (hash === undefined) return undefined;
  const nm = join(opts.projectDir, 'node_modules');
  const templateModules = join(opts.templateDir, 'node_modules');
  const templateHash = packageJsonHash(opts.templateDir);
  const current = kindOf(nm);

  if (hash === templateHash) {
    if (existsSync(templateModules)) {
      const target = realpathSync(templateModules);
      if (current === 'link' && safeRealpath(nm) === target) return hash;
      if (current !== 'missing') rmSync(nm, { recursive: true, force: true });
      symlinkSync(target, nm, 'dir');
      return hash;
    }
    // Without an installed template (a host process in a checkout), dependencies resolve upward.
    if (current === 'missing') return hash;
  }
  if (current === 'dir' && readMarker(nm) === hash) return hash;

  opts.onInstalling();
  if (current !== 'missing') rmSync(nm, { recursive: true, force: true });
  await npmInstall(opts);
  mkdirSync(nm, { recursive: true }); // npm creates none when there is nothing to install
  writeFileSync(join(nm, MARKER), hash);
  return hash;
}

/**
 * npm cannot use a read-only cache at all (it treats every entry as a miss), so when the shared
 * cache is not writable (the image's /npm-cache on a read-only root, no volume mounted over it),
 * install from a private writable copy on the project volume, made on the first reinstall.
 */
function writableCache(opts: DepsOptions): string | undefined {
  const shared = opts.env['npm_config_cache'];
  if (!shared) return undefined;
  try {
    accessSync(shared, constants.W_OK);
    return shared;
  } catch {}
  const own = join(opts.projectDir, TMP_DIR_NAME, 'npm-cache');
  if (!existsSync(own)) {
    opts.log.push(`npm cache ${shared} is read-only; copying it to ${own}`);
    cpSync(shared, `${own}.partial`, { recursive: true });
    renameSync(`${own}.partial`, own);
  }
  return own;
}

function npmInstall(opts: DepsOptions): Promise<void> {
  const args = ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=warn'];
  const cache = writableCache(opts);
  opts.log.push(`$ npm ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn('npm', args, {
      cwd: opts.projectDir,
      env: cache ? { ...opts.env, npm_config_cache: cache } : opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      signal: opts.signal,
    });
    child.stdout.on('data', (c: Buffer) => opts.log.push(c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => opts.log.push(c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`npm install failed with code ${code}`));
    });
  });
}

function kindOf(p: string): 'missing' | 'link' | 'dir' | 'other' {
  try {
    const st = lstatSync(p);
    return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'other';
  } catch {
    return 'missing';
  }
}

function safeRealpath(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

function readMarker(nm: string): string | undefined {
  try {
    return readFileSync(join(nm, MARKER), 'utf8').trim();
  } catch {
    return undefined;
  }
}
