import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import type { ScriptRun } from '@preview/tiers';

/** Bytes of a script's output kept (its tail) in a {@link ScriptRun}. */
export const SCRIPT_OUTPUT_BYTES = 16 * 1024;
/** How long a script may run before it is killed (SIGKILL), ms. */
export const SCRIPT_TIMEOUT_MS = 120_000;
/** What a script name may be: npm script names as projects write them (`seed`, `db:seed`). */
export const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$/;

/** Thrown for a request the daemon refuses: `status` and `code` are its answer. */
export class ScriptRequestError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Runs the project's npm script `name` (`npm run <name>` in `root`, the package.json's
 * `scripts[name]`) with `env` (the app's environment: DATABASE_URL and the rest), to its end or
 * {@link SCRIPT_TIMEOUT_MS}. One run of a name at a time.
 * @throws ScriptRequestError 400 `invalid_script` (a name outside {@link SCRIPT_NAME}), 404
 *   `no_script` (package.json has no such script, or none), 409 `script_running`.
 */
export class ScriptRunner {
  readonly #running = new Set<string>();
  readonly o: {
    root: string;
    env: () => Record<string, string | undefined>;
    /** @default SCRIPT_TIMEOUT_MS */
    timeoutMs?: number;
  };
  constructor(o: ScriptRunner['o']) {
    this.o = o;
  }

  async run(name: string): Promise<ScriptRun> {
    if (!SCRIPT_NAME.test(name))
      throw new ScriptRequestError(400, 'invalid_script', `script name: must match ${SCRIPT_NAME}`);
    const scripts = await this.#scripts();
    if (typeof scripts[name] !== 'string')
      throw new ScriptRequestError(404, 'no_script', `package.json has no scripts.${name}`);
    if (this.#running.has(name))
      throw new ScriptRequestError(409, 'script_running', `scripts.${name} is already running`);
    this.#running.add(name);
    try {
      return await this.#spawn(name);
    } finally {
      this.#running.delete(name);
    }
  }

  async #scripts(): Promise<Record<string, unknown>> {
    try {
      const pkg = JSON.parse(await readFile(join(this.o.root, 'package.json'), 'utf8')) as {
        scripts?: Record<string, unknown>;
      };
      return pkg.scripts && typeof pkg.scripts === 'object' ? pkg.scripts : {};
    } catch {
      return {};
    }
  }

  #spawn(name: string): Promise<ScriptRun> {
    const t0 = performance.now();
    return new Promise((resolve) => {
      let output = '';
      const keep = (b: Buffer) => {
        output = (output + b.toString('utf8')).slice(-SCRIPT_OUTPUT_BYTES);
      };
      const child = spawn('npm', ['run', '--silent', name], {
        cwd: this.o.root,
        env: this.o.env(),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, this.o.timeoutMs ?? SCRIPT_TIMEOUT_MS);
      const done = (exitCode: number | null, signal: string | null) => {
        clearTimeout(timer);
        resolve({ name, exitCode, signal, timedOut, ms: Math.round(performance.now() - t0), output });
      };
      child.once('error', (e) => {
        keep(Buffer.from(String(e.message)));
        done(null, null);
      });
      child.once('close', (code, signal) => done(code, signal));
    });
  }
}

/**
 * `POST /__preview/scripts/<name>` (the caller checked the token): runs the script and answers 200
 * with the {@link ScriptRun} (whatever its exit code), or the refusal's status and
 * `{error:{code,message}}`.
 */
export function handleScriptRequest(
  runner: ScriptRunner,
  name: string,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const answer = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  if (req.method !== 'POST') {
    answer(405, { error: { code: 'method_not_allowed', message: 'POST runs a script' } });
    return;
  }
  req.resume();
  runner.run(name).then(
    (r) => answer(200, r),
    (e: unknown) =>
      e instanceof ScriptRequestError
        ? answer(e.status, { error: { code: e.code, message: e.message } })
        : answer(500, { error: { code: 'internal', message: String((e as Error).message) } }),
  );
}
