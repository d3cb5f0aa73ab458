import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rm,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { overlayNpmCache } from './npm-cache.ts';
import { runNpm } from './npm-install.ts';
import { TMP_DIR_NAME } from './validate.ts';

/** Written into a node_modules the daemon made: the {@link depsKey} it was made for. */
export const DEPS_MARKER = '.preview-deps-hash';

/** Project files whose change can change what is installed (a batch touching one re-checks). */
export const DEPS_FILES: ReadonlySet<string> = new Set([
  'package.json',
  'package-lock.json',
  'npm-shrinkwrap.json',
  '.npmrc',
]);

export interface DepsOptions {
  projectDir: string;
  /** The template's directory; its node_modules (installed in the image) is shared read-only. */
  templateDir: string;
  /** Environment of npm (PATH, HOME, npm_config_*, NODE_EXTRA_CA_CERTS). */
  env: Record<string, string>;
  /** The node's shared npm caches, read-only, overlaid by the preview's own (see `npm-cache.ts`). */
  cacheLayers: readonly string[];
  /** npm's output as it comes. */
  onOutput: (text: string) => void;
  /** Called just before an install starts. */
  onInstalling: () => void;
  signal?: AbortSignal;
}

/** The package.json fields that decide what npm puts in node_modules. */
const INSTALL_FIELDS = [
  'dependencies',
  'devDependencies',
  'optionalDependencies',
  'peerDependencies',
  'bundleDependencies',
  'overrides',
  'workspaces',
] as const;

/** The fields npm records for the root in a lockfile (`packages[""]`), to tell whether it is in sync. */
const LOCKED_FIELDS = [
  'dependencies',
  'devDependencies',
  'optionalDependencies',
  'peerDependencies',
] as const;

/** Entries of an installed node_modules that are not packages (caches, markers). */
const NOT_COPIED = new Set([DEPS_MARKER, '.preview-stamp', '.vite', '.vite-temp']);
/** Template entries that stay out of a project's node_modules of links. */
const NOT_LINKED = new Set([...NOT_COPIED, '.package-lock.json']);

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

/** sha256 of the project's lockfile (`npm-shrinkwrap.json` first, as npm reads it), if any. */
export function lockfileHash(dir: string): string | undefined {
  const file = lockfileOf(dir);
  return file ? createHash('sha256').update(readFileSync(file)).digest('hex') : undefined;
}

/**
 * What the installed dependencies must match: the dependency fields and the lockfile (and
 * `.npmrc`, which can change the registry). `undefined` without a package.json.
 */
export function depsKey(dir: string): string | undefined {
  const fields = packageJsonHash(dir);
  if (fields === undefined) return undefined;
  let npmrc = '';
  try {
    npmrc = createHash('sha256')
      .update(readFileSync(join(dir, '.npmrc')))
      .digest('hex');
  } catch {}
  return `${fields}.${lockfileHash(dir) ?? ''}.${npmrc}`;
}

/**
 * Whether the project's lockfile records the dependencies its package.json declares (what
 * `npm ci` requires). False without a lockfile or with an unparsable one.
 */
export function lockfileInSync(dir: string): boolean {
  const file = lockfileOf(dir);
  if (!file) return false;
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
    const lock = JSON.parse(readFileSync(file, 'utf8')) as {
      packages?: Record<string, Record<string, unknown>>;
    };
    const root = lock.packages?.[''];
    if (!root) return false;
    return LOCKED_FIELDS.every(
      (f) => canonicalJson(emptyToUndefined(pkg[f])) === canonicalJson(emptyToUndefined(root[f])),
    );
  } catch {
    return false;
  }
}

/**
 * Whether the project can use the template's installed dependencies as they are: the same
 * dependency fields, and either no lockfile or the template's own.
 */
export function matchesTemplate(projectDir: string, templateDir: string): boolean {
  const fields = packageJsonHash(projectDir);
  if (fields === undefined || fields !== packageJsonHash(templateDir)) return false;
  const lock = lockfileHash(projectDir);
  return lock === undefined || lock === lockfileHash(templateDir);
}

/**
 * Whether {@link ensureDeps} must run npm: false when the project can link the template's installed
 * packages (the same dependency fields, no other lockfile) or already holds an install for its
 * {@link depsKey}, and without a package.json. Cheap (hashes package.json and the lockfile): a
 * claim's files that only drop the template's lockfile, or restate its dependencies, are not an
 * install, and no one is told one is running.
 */
export function installNeeded(opts: Pick<DepsOptions, 'projectDir' | 'templateDir'>): boolean {
  return depsPlan(opts).install;
}

/**
 * What {@link ensureDeps} must do for the project's {@link depsKey}: nothing, link the template's
 * packages (`link`: their real path), or run npm (`install`).
 */
function depsPlan(opts: Pick<DepsOptions, 'projectDir' | 'templateDir'>): {
  key: string | undefined;
  link?: string;
  install: boolean;
} {
  const key = depsKey(opts.projectDir);
  if (key === undefined) return { key, install: false };
  const nm = join(opts.projectDir, 'node_modules');
  const templateModules = join(opts.templateDir, 'node_modules');
  const current = kindOf(nm);
  if (matchesTemplate(opts.projectDir, opts.templateDir)) {
    if (existsSync(templateModules)) {
      const target = realpathSync(templateModules);
      return current === 'dir' && readMarker(nm) === `template:${target}`
        ? { key, install: false }
        : { key, link: target, install: false };
    }
    // Without an installed template (a host process in a checkout), dependencies resolve upward.
    if (current === 'missing') return { key, install: false };
  }
  return { key, install: !(current === 'dir' && readMarker(nm) === key) };
}

/**
 * Makes the project's dependencies match its package.json, doing as little as possible:
 * - the template's dependencies (and the template is installed, as in the image): node_modules is
 *   a directory of links to the template's packages (nothing copied, and writable, so tools that
 *   keep files there, such as Vite's config loader, work);
 * - a previous install for the same {@link depsKey}: nothing;
 * - otherwise an install in a staging directory: `npm ci` when the lockfile is in sync with
 *   package.json, else `npm install` on top of a copy of the template's (or the last install's)
 *   packages, so npm fetches and unpacks only the difference. The finished node_modules then
 *   replaces the project's in two renames; a failed install leaves it as it was.
 *
 * Returns the key the dependencies now match (`undefined` without a package.json).
 * @throws InstallError when npm fails (names the package and npm's message).
 */
export async function ensureDeps(opts: DepsOptions): Promise<string | undefined> {
  const plan = depsPlan(opts);
  if (plan.link) swapIn(opts.projectDir, linkFarm(opts.projectDir, plan.link));
  const key = plan.key;
  if (!plan.install || key === undefined) return key;
  const nm = join(opts.projectDir, 'node_modules');
  const templateModules = join(opts.templateDir, 'node_modules');

  opts.onInstalling();
  const staging = join(opts.projectDir, TMP_DIR_NAME, `install-${randomBytes(6).toString('hex')}`);
  try {
    const command = lockfileInSync(opts.projectDir) ? 'ci' : 'install';
    const diff = command === 'install' && existsSync(templateModules) ? dependencyDiff(opts) : undefined;
    const t0 = performance.now();
    if (diff) {
      mkdirSync(staging, { recursive: true });
      writeFileSync(join(staging, 'package.json'), JSON.stringify({ private: true, dependencies: diff }));
      if (existsSync(join(opts.projectDir, '.npmrc')))
        copyFileSync(join(opts.projectDir, '.npmrc'), join(staging, '.npmrc'));
      opts.onOutput(
        `installing what the template does not have: ${Object.keys(diff).join(', ') || '(nothing)'}\n`,
      );
    } else
      await stage(
        opts,
        staging,
        command,
        // The template's packages, else (a checkout without an installed template) the last install.
        existsSync(templateModules) ? templateModules : nm,
      );
    const cache = privateNpmCache(opts.projectDir);
    await overlayNpmCache({ dir: cache, layers: opts.cacheLayers });
    opts.onOutput(`staged the install and the npm cache in ${Math.round(performance.now() - t0)} ms\n`);
    if (!diff || Object.keys(diff).length > 0)
      await runNpm({
        command,
        // Layered on the template: its packages provide the peers (one React, one Vue).
        ...(diff ? { extraArgs: ['--legacy-peer-deps'] } : {}),
        cwd: staging,
        env: opts.env,
        cache,
        onOutput: opts.onOutput,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    const built = diff
      ? layer(opts.projectDir, realpathSync(templateModules), join(staging, 'node_modules'))
      : join(staging, 'node_modules');
    mkdirSync(built, { recursive: true }); // npm makes none when there is nothing to install
    writeFileSync(join(built, DEPS_MARKER), key);
    swapIn(opts.projectDir, built);
    return key;
  } finally {
    rm(staging, { recursive: true, force: true }, () => {});
  }
}

/**
 * The project's dependencies that the template's installed packages do not provide: names it lacks
 * and names with another range (an upgrade). `undefined` when the project needs a whole install
 * (overrides, workspaces, bundled dependencies: npm must see the whole tree).
 */
export function dependencyDiff(
  opts: Pick<DepsOptions, 'projectDir' | 'templateDir'>,
): Record<string, string> | undefined {
  const read = (dir: string) =>
    JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
  let pkg: Record<string, unknown>;
  let tpl: Record<string, unknown>;
  try {
    pkg = read(opts.projectDir);
    tpl = read(opts.templateDir);
  } catch {
    return undefined;
  }
  if (pkg['overrides'] || pkg['workspaces'] || pkg['bundleDependencies'] || pkg['bundledDependencies'])
    return undefined;
  const all = (p: Record<string, unknown>) =>
    Object.assign(
      {},
      ...(['optionalDependencies', 'devDependencies', 'dependencies'] as const).map((f) =>
        p[f] && typeof p[f] === 'object' ? (p[f] as Record<string, string>) : {},
      ),
    ) as Record<string, string>;
  const have = all(tpl);
  const diff: Record<string, string> = {};
  for (const [name, range] of Object.entries(all(pkg))) {
    if (typeof range !== 'string') return undefined;
    if (have[name] !== range) diff[name] = range;
  }
  return diff;
}

/**
 * A node_modules made of the template's packages (links) with the packages of a layered install
 * (`installed`, moved in) on top: a package of the install replaces the template's of the same
 * name, scoped packages one by one, and so do its commands in `.bin`.
 */
function layer(projectDir: string, template: string, installed: string): string {
  const dir = linkFarm(projectDir, template, true);
  if (!existsSync(installed)) return dir;
  for (const name of readdirSync(installed)) {
    if (name.startsWith('.') && name !== '.bin') continue;
    const from = join(installed, name);
    if (name === '.bin' || name.startsWith('@')) {
      // The template may have no command (no `.bin`) or no package of this scope yet.
      mkdirSync(join(dir, name), { recursive: true });
      for (const inner of readdirSync(from)) {
        rmSync(join(dir, name, inner), { recursive: true, force: true });
        renameSync(join(from, inner), join(dir, name, inner));
      }
      continue;
    }
    rmSync(join(dir, name), { recursive: true, force: true });
    renameSync(from, join(dir, name));
  }
  return dir;
}

/** The preview's own npm cache, on its volume (see `npm-cache.ts`). */
export function privateNpmCache(projectDir: string): string {
  return join(projectDir, TMP_DIR_NAME, 'npm-cache');
}

/** The staging directory: the project's npm inputs, and the packages npm starts from. */
async function stage(
  opts: DepsOptions,
  staging: string,
  command: 'ci' | 'install',
  seedFrom: string,
): Promise<void> {
  mkdirSync(staging, { recursive: true });
  for (const f of DEPS_FILES)
    if (existsSync(join(opts.projectDir, f))) copyFileSync(join(opts.projectDir, f), join(staging, f));
  // `npm ci` starts from nothing; `npm install` keeps what already matches and adds the rest.
  if (command !== 'install' || !existsSync(seedFrom)) return;
  const from = realpathSync(seedFrom);
  const to = join(staging, 'node_modules');
  opts.onOutput(`copying the installed packages to start from (${from})\n`);
  // cp -a: several times faster than fs.cpSync on a big tree, and off the event loop.
  await new Promise<void>((resolve, reject) => {
    const cp = spawn('cp', ['-a', from, to], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    cp.stderr.on('data', (c: Buffer) => {
      err += c.toString();
    });
    cp.on('error', reject);
    cp.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cp -a failed: ${err.trim()}`))));
  });
  for (const name of NOT_COPIED) rmSync(join(to, name), { recursive: true, force: true });
  // npm trusts its hidden lockfile (and skips reading every package) only while no directory in
  // node_modules is newer than it: keep the copied directory's own time.
  const st = statSync(from);
  utimesSync(to, st.atime, st.mtime);
}

/**
 * A node_modules of links to each of the template's packages, made beside the project. `deep`: the
 * scope directories and `.bin` are directories of links (so packages can be put beside them).
 */
function linkFarm(projectDir: string, target: string, deep = false): string {
  const dir = join(projectDir, TMP_DIR_NAME, `links-${randomBytes(6).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(target)) {
    if (NOT_LINKED.has(name)) continue;
    if (deep && (name === '.bin' || name.startsWith('@'))) {
      mkdirSync(join(dir, name));
      for (const inner of readdirSync(join(target, name))) {
        // `.bin` holds relative links into the template: point at their targets.
        const src = join(target, name, inner);
        symlinkSync(name === '.bin' ? safeRealpath(src) : src, join(dir, name, inner));
      }
    } else symlinkSync(join(target, name), join(dir, name), 'dir');
  }
  writeFileSync(join(dir, DEPS_MARKER), `template:${target}`);
  return dir;
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** Puts `built` in place of the project's node_modules (two renames), and removes the old one. */
function swapIn(projectDir: string, built: string): void {
  const nm = join(projectDir, 'node_modules');
  const old = `${built}.old`;
  if (kindOf(nm) !== 'missing') renameSync(nm, old);
  renameSync(built, nm);
  rm(old, { recursive: true, force: true }, () => {});
}

function kindOf(p: string): 'missing' | 'link' | 'dir' | 'other' {
  try {
    const st = lstatSync(p);
    return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'other';
  } catch {
    return 'missing';
  }
}

function readMarker(nm: string): string | undefined {
  try {
    return readFileSync(join(nm, DEPS_MARKER), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function lockfileOf(dir: string): string | undefined {
  for (const f of ['npm-shrinkwrap.json', 'package-lock.json'])
    if (existsSync(join(dir, f))) return join(dir, f);
  return undefined;
}

function emptyToUndefined(v: unknown): unknown {
  return v && typeof v === 'object' && Object.keys(v).length === 0 ? undefined : v;
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

/** Removes what a crash left in the project's temp dir (staging installs, link farms). */
export function cleanStaleInstalls(projectDir: string): void {
  const tmp = join(projectDir, TMP_DIR_NAME);
  let names: string[];
  try {
    names = readdirSync(tmp);
  } catch {
    return;
  }
  for (const n of names)
    if (/^(install|links)-[0-9a-f]+/.test(n)) rmSync(join(tmp, n), { recursive: true, force: true });
}
