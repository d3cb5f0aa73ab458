import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, type TemplateName, TierUnavailableError } from '@preview/tiers';
import type { Logger } from 'pino';

/** Written into an installed template's node_modules: the {@link installStamp} it was installed for. */
export const STAMP_FILE = '.preview-stamp';

/** Source entries that are never mirrored (build outputs and the template's own installs). */
const NOT_MIRRORED = new Set(['node_modules', '.next', 'dist']);

/** Where one template's install stands. */
export type InstallState =
  | { kind: 'waiting' }
  | { kind: 'installing' }
  | { kind: 'installed'; reused: boolean }
  | { kind: 'failed'; message: string };

export interface TemplateInstallOptions {
  /** The templates' sources, `<sourceDir>/<template>/{package.json,package-lock.json,...}` (the repo's `templates/`). */
  sourceDir: string;
  /** Where installed templates go, `<targetDir>/<template>/node_modules` (the process runtime's templates dir). */
  targetDir: string;
  /** Templates to install, in this order (the warm pools' first). */
  templates: readonly TemplateName[];
  /** `NODE_EXTRA_CA_CERTS` for npm (a host path), behind a TLS-intercepting proxy; unset: the host's environment. */
  caCerts?: string | undefined;
  /** This node's name, in the errors claims get while a template is missing. */
  node: string;
  log: Logger;
}

/**
 * What an installed template's stamp is made of: the Node version, CPU architecture and platform
 * (native packages such as rolldown differ), the package.json and the lockfile, as sha256 hex (16
 * characters). The same recipe as `docker/preview-base/build.sh`, so an install is redone exactly
 * when one of them changes.
 */
export function installStamp(packageJson: string, lockfile: string): string {
  return createHash('sha256')
    .update(`${process.version}${process.arch}${process.platform}\n`)
    .update(packageJson)
    .update(lockfile)
    .digest('hex')
    .slice(0, 16);
}

/** The last non-empty line of npm's output (`added 14 packages in 3s`), or `''`. */
export function npmSummary(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.at(-1) ?? '';
}

/**
 * npm's error message in a few lines: its first 4 `npm error` lines that say something (not the
 * pointers to its debug log, which is in the installing user's cache, nor a lone code), else the
 * last 6 lines of its output.
 */
export function npmErrorMessage(output: string): string {
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const errors = lines.filter(
    (l) =>
      /^npm (error|ERR!)/.test(l) &&
      !/^npm (error|ERR!)\s*\S*$/.test(l) &&
      !/complete log of this run|\/_logs\//.test(l),
  );
  return (errors.length ? errors.slice(0, 4) : lines.slice(-6)).join(' | ') || '(npm printed nothing)';
}

/**
 * Installs the templates' dependencies for the host-process runtime, which has no image to take
 * them from: each template's sources are mirrored from `sourceDir` into `targetDir` (a deleted file
 * goes too) and `npm ci --prefer-offline` runs from its lockfile, once per {@link installStamp}
 * (kept in `node_modules/.preview-stamp`, written last, so an interrupted install is redone).
 * Templates install one after the other in the given order; each gives one log line (npm's summary,
 * or the error naming the template, npm's message and what to run). Claims ask {@link check}.
 *
 * @example
 * const installs = new TemplateInstalls({ sourceDir: 'templates', targetDir: '.data/templates', templates: ['vite-react'], node: 'n1', log });
 * installs.onInstalled(() => void pools.populate());
 * void installs.start();
 */
export class TemplateInstalls {
  readonly #o: TemplateInstallOptions;
  readonly #states = new Map<TemplateName, InstallState>();
  readonly #listeners = new Set<(template: TemplateName) => void>();
  #run: Promise<void> | undefined;
  #abort = new AbortController();

  /** @throws ConfigError (`invalid_config`) when a template has no sources under `sourceDir`. */
  constructor(options: TemplateInstallOptions) {
    this.#o = options;
    for (const t of options.templates) {
      if (!existsSync(join(options.sourceDir, t, 'package.json')))
        throw new ConfigError(
          'invalid_config',
          `PROCESS_TEMPLATES: template "${t}" has no ${join(options.sourceDir, t, 'package.json')}`,
        );
      this.#states.set(t, { kind: 'waiting' });
    }
  }

  /** The templates this node installs, in order. */
  get templates(): readonly TemplateName[] {
    return this.#o.templates;
  }

  /** Where `template`'s install stands (`undefined`: this node does not install it). */
  state(template: TemplateName): InstallState | undefined {
    return this.#states.get(template);
  }

  /** Whether `template` is installed and can run. */
  isInstalled(template: TemplateName): boolean {
    return this.#states.get(template)?.kind === 'installed';
  }

  /** Calls `listener` each time a template finishes installing (also when it was already installed). */
  onInstalled(listener: (template: TemplateName) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Throws unless `template` can run on this node now.
   *
   * @throws TierUnavailableError `installing_templates` while it is not installed yet (the message
   *   names what is installing and how far along), `template_install_failed` with the install's
   *   error, `template_not_installed` for a template this node does not install.
   */
  check(template: TemplateName): void {
    const s = this.#states.get(template);
    const opts = { tier: 'docker' };
    if (!s)
      throw new TierUnavailableError(
        'template_not_installed',
        `template ${template} is not installed on node ${this.#o.node} (it installs ${this.#o.templates.join(', ')}: PROCESS_TEMPLATES)`,
        opts,
      );
    if (s.kind === 'installed') return;
    if (s.kind === 'failed') throw new TierUnavailableError('template_install_failed', s.message, opts);
    const done = [...this.#states.values()].filter(
      (x) => x.kind === 'installed' || x.kind === 'failed',
    ).length;
    const current = [...this.#states].find(([, x]) => x.kind === 'installing')?.[0];
    throw new TierUnavailableError(
      'installing_templates',
      `installing templates on node ${this.#o.node}: ${done} of ${this.#states.size} done${current ? `, now ${current}` : ''}; ${template} is not installed yet, try again shortly`,
      opts,
    );
  }

  /** Installs every template in order (once; later calls return the same run). Never rejects: failures are states. */
  start(): Promise<void> {
    this.#run ??= (async () => {
      await mkdir(this.#o.targetDir, { recursive: true });
      for (const t of this.#o.templates) {
        if (this.#abort.signal.aborted) return;
        this.#states.set(t, { kind: 'installing' });
        try {
          const reused = await this.#install(t);
          this.#states.set(t, { kind: 'installed', reused });
          for (const l of this.#listeners) l(t);
        } catch (e) {
          if (this.#abort.signal.aborted) return;
          const message = (e as Error).message;
          this.#states.set(t, { kind: 'failed', message });
          this.#o.log.error({ template: t }, message);
        }
      }
    })();
    return this.#run;
  }

  /** Resolves when the run {@link start} began has finished (every template installed or failed). */
  async done(): Promise<void> {
    await this.#run;
  }

  /** Stops: a running npm is killed, the templates after it are not installed. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#run;
  }

  /** Mirrors the sources, then runs npm when the stamp differs. Returns whether the install was reused. */
  async #install(t: TemplateName): Promise<boolean> {
    const src = join(this.#o.sourceDir, t);
    const dest = join(this.#o.targetDir, t);
    await mkdir(dest, { recursive: true });
    await mirror(src, dest);
    const packageJson = await readFile(join(src, 'package.json'), 'utf8');
    const lockfile = await readFile(join(src, 'package-lock.json'), 'utf8').catch(() => undefined);
    if (lockfile === undefined)
      throw new Error(
        `template ${t}: ${join(src, 'package-lock.json')} is missing (templates install from their lockfile)`,
      );
    const stamp = installStamp(packageJson, lockfile);
    const stampFile = join(dest, 'node_modules', STAMP_FILE);
    if ((await readFile(stampFile, 'utf8').catch(() => '')).trim() === stamp) {
      this.#o.log.info({ template: t, dir: dest }, `template ${t}: dependencies already installed`);
      return true;
    }
    this.#o.log.info({ template: t, dir: dest }, `template ${t}: installing dependencies (npm ci)`);
    const t0 = performance.now();
    await rm(join(dest, 'node_modules'), { recursive: true, force: true });
    const r = await this.#npm(['ci', '--prefer-offline', '--no-audit', '--no-fund'], dest);
    if (r.code !== 0) {
      const how = this.#o.caCerts
        ? `NODE_EXTRA_CA_CERTS=${this.#o.caCerts} `
        : 'behind a TLS-intercepting proxy set NODE_EXTRA_CA_CERTS; ';
      throw new Error(
        `template ${t}: npm ci failed (${r.code === null ? `killed by ${r.signal}` : `exit ${r.code}`}): ${npmErrorMessage(r.output)}. ` +
          `Check the network to the npm registry (${how}then restart), or install it yourself: cd ${dest} && npm ci`,
      );
    }
    await writeFile(stampFile, `${stamp}\n`);
    this.#o.log.info(
      { template: t, ms: Math.round(performance.now() - t0) },
      `template ${t}: ${npmSummary(r.output) || 'installed'}`,
    );
    return false;
  }

  #npm(args: string[], cwd: string) {
    return new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>(
      (resolve, reject) => {
        // The host's environment (proxy settings, npm's own config), with the configured CA file.
        const env = { ...process.env, ...(this.#o.caCerts ? { NODE_EXTRA_CA_CERTS: this.#o.caCerts } : {}) };
        const child = spawn('npm', args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        const add = (d: Buffer) => {
          output += d.toString();
          if (output.length > 64 * 1024) output = output.slice(-32 * 1024);
        };
        child.stdout.on('data', add);
        child.stderr.on('data', add);
        const onAbort = () => child.kill('SIGTERM');
        this.#abort.signal.addEventListener('abort', onAbort, { once: true });
        child.once('error', (e) =>
          reject(new Error(`npm could not be started (${e.message}): install Node.js with npm on this host`)),
        );
        child.once('close', (code, signal) => {
          this.#abort.signal.removeEventListener('abort', onAbort);
          resolve({ code, signal, output });
        });
      },
    );
  }
}

/** Makes `dest` hold `src`'s entries (files and folders, not {@link NOT_MIRRORED}); `dest`'s node_modules stays. */
async function mirror(src: string, dest: string): Promise<void> {
  const keep = new Set((await readdir(src)).filter((n) => !NOT_MIRRORED.has(n)));
  for (const name of await readdir(dest))
    if (name !== 'node_modules' && !keep.has(name))
      await rm(join(dest, name), { recursive: true, force: true });
  for (const name of keep) {
    await rm(join(dest, name), { recursive: true, force: true });
    await cp(join(src, name), join(dest, name), { recursive: true });
  }
}
