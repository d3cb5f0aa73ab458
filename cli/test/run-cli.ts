import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

/** The `preview` bin (root package.json "bin"), run as `npx preview` runs it. */
export const PREVIEW_BIN = join(import.meta.dirname, '..', 'bin', 'preview.js');

/** A finished `preview` run. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts `preview <args>` as a process with `env` over a copy of this process's environment without
 * the variables the CLI reads (PREVIEW_URL, PREVIEW_TOKEN, DATABASE_URL, REDIS_URL, DOCKER_HOST).
 * `done` settles with its exit code and output once it exits.
 */
export function startCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): { child: ChildProcess; done: Promise<CliRun>; stdout(): string } {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of [
    'PREVIEW_URL',
    'PREVIEW_TOKEN',
    'DATABASE_URL',
    'REDIS_URL',
    'DOCKER_HOST',
    'DOCKER_SOCKET',
  ])
    delete base[k];
  const merged = { ...base, ...env };
  for (const [k, v] of Object.entries(merged)) if (v === undefined) delete merged[k];
  const child = spawn(process.execPath, [PREVIEW_BIN, ...args], {
    env: merged as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<CliRun>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, done, stdout: () => stdout };
}

/** Runs `preview <args>` to the end. */
export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliRun> {
  return startCli(args, env).done;
}

/** Waits until `check` holds, polling every 50 ms; throws `what` after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
