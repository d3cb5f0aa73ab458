import { spawn } from 'node:child_process';
import { PreviewError } from '@preview/tiers';

/** An `npm ci` / `npm install` that failed: `message` names the package and npm's own words. */
export class InstallError extends PreviewError {
  /** The package spec npm could not install, when its output names one. */
  readonly pkg: string | undefined;
  /** @example new InstallError('install_failed', 'npm ci failed for left-pad@9: E404', { pkg: 'left-pad@9' }) */
  constructor(
    code: 'install_failed',
    message: string,
    options?: { pkg?: string | undefined; cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'InstallError';
    this.pkg = options?.pkg;
  }
}

export interface NpmRunOptions {
  command: 'ci' | 'install';
  /** More npm arguments (e.g. `--legacy-peer-deps`). */
  extraArgs?: readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** npm's private, writable cache. */
  cache: string;
  /** Each chunk npm prints (stdout and stderr), as it comes. */
  onOutput: (text: string) => void;
  signal?: AbortSignal;
}

/**
 * The arguments of an install: offline first (the cache answers what it holds without asking the
 * registry), no audit, fund or update check (each a registry round trip), no log files (npm cleans
 * its logs directory on every run, which costs seconds on a slow disk), and `http` log level so
 * the status log shows each download.
 */
export function npmArgs(command: 'ci' | 'install'): string[] {
  return [
    command,
    '--prefer-offline',
    '--no-audit',
    '--no-fund',
    '--no-update-notifier',
    '--logs-max=0',
    '--loglevel=http',
    ...(command === 'install' ? ['--no-save'] : []),
  ];
}

/**
 * Runs npm; resolves when it exits 0, rejects with an {@link InstallError} naming the package
 * and npm's message otherwise (an unknown package, a version that does not exist, no network).
 */
export function runNpm(opts: NpmRunOptions): Promise<void> {
  const args = [...npmArgs(opts.command), ...(opts.extraArgs ?? [])];
  opts.onOutput(`$ npm ${args.join(' ')}\n`);
  let output = '';
  return new Promise((resolve, reject) => {
    const child = spawn('npm', args, {
      cwd: opts.cwd,
      env: { ...opts.env, npm_config_cache: opts.cache },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const onData = (c: Buffer) => {
      const text = c.toString('utf8');
      if (output.length < 256 * 1024) output += text;
      opts.onOutput(text);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) =>
      reject(
        new InstallError('install_failed', `npm ${opts.command} could not run: ${e.message}`, { cause: e }),
      ),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(describeNpmFailure(opts.command, output, signal ?? `code ${code}`));
    });
  });
}

/** npm's error lines, without the prefix and the log-file pointers. */
function errorLines(output: string): string[] {
  return output
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => /^npm (error|ERR!)/.test(l))
    .map((l) => l.replace(/^npm (error|ERR!)\s?/, ''))
    .filter((l) => l && !/complete log of this run|^A complete log|^\s*$/.test(l));
}

/**
 * Turns npm's output into one message that names what failed, e.g.
 * `npm install failed for ms@99.0.0: No matching version found for ms@99.0.0.`
 */
export function describeNpmFailure(command: string, output: string, exit: string): InstallError {
  const lines = errorLines(output);
  const text = lines.join('\n');
  const pkg =
    /No matching version found for (\S+?)\.?(?:\s|$)/.exec(text)?.[1] ??
    /'([^']+)' is not in this registry/.exec(text)?.[1] ??
    /404 Not Found - GET \S+?\/((?:@[^/\s]+(?:\/|%2[fF]))?[^/\s]+)(?:\s|$)/
      .exec(text)?.[1]
      ?.replace(/%2[fF]/, '/') ??
    /request to \S+?\/((?:@[^/\s]+(?:\/|%2[fF]))?[^/\s]+) failed/.exec(text)?.[1]?.replace(/%2[fF]/, '/');
  const detail =
    lines.find((l) =>
      /No matching version|is not in this registry|request to .* failed|ERESOLVE|Invalid/.test(l),
    ) ??
    lines.find((l) => !/^code\s/.test(l)) ??
    `npm exited with ${exit}`;
  return new InstallError('install_failed', `npm ${command} failed${pkg ? ` for ${pkg}` : ''}: ${detail}`, {
    pkg,
  });
}
