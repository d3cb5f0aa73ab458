import { createHash } from 'node:crypto';
import {
  ConflictError,
  contentBytes,
  type FileOp,
  InvalidInputError,
  LIMITS,
  NotFoundError,
  PreviewError,
  type ProjectFiles,
  type ScriptRun,
  TimeoutError,
} from '@preview/tiers';
import { DaemonLink } from '@preview/tiers/daemon-sync';
import WebSocket from 'ws';

/** What a health wait ended on: the dev server answered (`ready`), or a phase the caller settles for. */
export type SettledPhase = 'ready' | 'listening' | 'installing';

/**
 * Polls the daemon's health route (`GET /__preview/health`, answering `{ok, phase, message?}`, see the
 * daemon's PROTOCOL.md) until the dev server answered 200, ever more slowly ({@link pollDelays}). With `listening` it returns as soon as the
 * daemon answers at all (it seeds the project before it listens, so its manifest is then right); with
 * `installing` also while the daemon installs the project's dependencies, which can take minutes.
 *
 * @returns the phase it ended on.
 * @throws PreviewError `sandbox_failed` when `isDead` says so, `app_error` at once when the daemon
 *   reports `error` (its message, e.g. the app's exit and last output, is the error's message);
 *   TimeoutError after `timeoutMs` with the last health answer.
 */
export async function waitReady(
  upstream: string,
  options: {
    timeoutMs: number;
    signal?: AbortSignal;
    /** The first wait between two polls; each next one is 1.5 times longer. @default 10 */
    intervalMs?: number;
    /** The longest wait between two polls. @default the larger of 40 and `intervalMs` */
    maxIntervalMs?: number;
    isDead?: () => string | undefined;
    listening?: boolean;
    /** Return `installing` while the daemon installs dependencies. @default false */
    installing?: boolean;
  },
): Promise<SettledPhase> {
  const deadline = Date.now() + options.timeoutMs;
  let last = '';
  const delays = pollDelays(options.intervalMs ?? 10, options.maxIntervalMs);
  for (;;) {
    options.signal?.throwIfAborted();
    const dead = options.isDead?.();
    if (dead) throw new PreviewError('sandbox_failed', dead);
    let health: { phase?: string; message?: string } | undefined;
    try {
      const res = await fetch(`${upstream}/__preview/health`, { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      if (res.status === 200) return 'ready';
      if (options.listening && res.status === 503) return 'listening';
      last = `${res.status} ${text.slice(0, 300)}`;
      health = res.status === 503 ? parseHealth(text) : undefined;
    } catch (e) {
      last = (e as Error).message;
    }
    if (health?.phase === 'installing' && options.installing) return 'installing';
    if (health?.phase === 'error')
      throw new PreviewError('app_error', `the app failed to start: ${health.message ?? 'no message'}`);
    if (Date.now() > deadline)
      throw new TimeoutError(
        'timeout',
        `preview not ready after ${options.timeoutMs} ms (last health answer: ${last})`,
      );
    await new Promise((r) => setTimeout(r, delays.next().value));
  }
}

/**
 * The waits between health polls, ms: `first`, then 1.5 times longer each time, up to `max`
 * (@default the larger of 40 and `first`). A claim polls from 10 ms (someone waits for it); a warm
 * start, which nobody waits for, from 50 ms up to 500 ms: each poll of a sandbox that is still
 * booting costs the agent a connection (and a refused one an Error with its stack) and the sandbox
 * an answer, CPU its app needs to start on a busy node.
 */
export function* pollDelays(first: number, max = Math.max(40, first)): Generator<number, never> {
  for (let d = first; ; d = Math.min(d * 1.5, max)) yield Math.min(d, max);
}

function parseHealth(text: string): { phase?: string; message?: string } | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' ? (v as { phase?: string; message?: string }) : undefined;
  } catch {
    return undefined;
  }
}

/** `{path: sha256hex}` of the project the daemon holds (no node_modules). */
export async function fetchManifest(
  upstream: string,
  token: string,
  signal?: AbortSignal,
): Promise<Record<string, string>> {
  const res = await fetch(`${upstream}/__preview/manifest`, {
    headers: { authorization: `Bearer ${token}` },
    ...(signal ? { signal } : {}),
  });
  if (!res.ok)
    throw new PreviewError(
      'daemon_error',
      `daemon manifest answered ${res.status}: ${(await res.text()).slice(0, 300)}`,
    );
  const body = (await res.json()) as { files?: Record<string, string> };
  return body.files ?? {};
}

/**
 * Gives a running daemon the app's environment (`POST /__preview/env`, see the daemon's PROTOCOL.md).
 * When it resolves the daemon reports not-ready until its dev server runs with the environment, so a
 * following health wait covers it. A refused environment → `InvalidInputError`, a different one
 * already set → `ConflictError` (`env_already_set`).
 */
export async function setAppEnv(
  upstream: string,
  token: string,
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<{ applied: boolean }> {
  const res = await fetch(`${upstream}/__preview/env`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ env }),
    ...(signal ? { signal } : {}),
  });
  const text = await res.text();
  let body: { applied?: boolean; error?: { code?: string; message?: string } } = {};
  try {
    body = JSON.parse(text);
  } catch {
    /* described below */
  }
  if (res.ok) return { applied: body.applied === true };
  const code = body.error?.code ?? 'daemon_error';
  const message = body.error?.message ?? `daemon env answered ${res.status}: ${text.slice(0, 300)}`;
  if (res.status === 400 || res.status === 413) throw new InvalidInputError(code, message);
  if (res.status === 409) throw new ConflictError(code, message);
  throw new PreviewError('daemon_error', `daemon env answered ${res.status}: ${message}`);
}

/**
 * Runs the project's npm script `name` in the sandbox (`POST /__preview/scripts/<name>`, see the
 * daemon's PROTOCOL.md) and returns how it ended, whatever its exit code.
 * @throws InvalidInputError (a bad name), NotFoundError `no_script`, ConflictError `script_running`,
 *   PreviewError `daemon_error` for anything else the daemon answers.
 */
export async function runScript(
  upstream: string,
  token: string,
  name: string,
  signal?: AbortSignal,
): Promise<ScriptRun> {
  const res = await fetch(`${upstream}/__preview/scripts/${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    ...(signal ? { signal } : {}),
  });
  const text = await res.text();
  let body: ScriptRun & { error?: { code?: string; message?: string } };
  try {
    body = JSON.parse(text);
  } catch {
    throw new PreviewError('daemon_error', `daemon script answered ${res.status}: ${text.slice(0, 300)}`);
  }
  if (res.ok) return body;
  const code = body.error?.code ?? 'daemon_error';
  const message = body.error?.message ?? `daemon script answered ${res.status}`;
  if (res.status === 400) throw new InvalidInputError(code, message);
  if (res.status === 404) throw new NotFoundError(code, message);
  if (res.status === 409) throw new ConflictError(code, message);
  throw new PreviewError('daemon_error', `daemon script answered ${res.status}: ${message}`);
}

function decode(v: ProjectFiles[string]): { content: string; encoding: 'utf8' | 'base64' } {
  return typeof v === 'string' ? { content: v, encoding: 'utf8' } : v;
}

/**
 * The ops that turn the template's project (`manifest`) into the user's: puts for files that differ,
 * deletes for template files the user does not have. Split into batches within `LIMITS`.
 */
export function diffOps(manifest: Record<string, string>, files: ProjectFiles): FileOp[][] {
  const ops: FileOp[] = [];
  for (const [path, value] of Object.entries(files)) {
    const { content, encoding } = decode(value);
    const bytes = Buffer.from(content, encoding);
    const hash = createHash('sha256').update(bytes).digest('hex');
    if (manifest[path] !== hash) ops.push({ op: 'put', path, content, encoding });
  }
  for (const path of Object.keys(manifest)) if (!(path in files)) ops.push({ op: 'delete', path });
  const batches: FileOp[][] = [];
  let cur: FileOp[] = [];
  let bytes = 0;
  for (const op of ops) {
    const n = op.op === 'put' ? contentBytes(op) : 0;
    if (cur.length && (cur.length >= LIMITS.batchOps || bytes + n > LIMITS.batchBytes)) {
      batches.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(op);
    bytes += n;
  }
  if (cur.length) batches.push(cur);
  return batches;
}

export function syncUrl(upstream: string): string {
  return `${upstream.replace(/^http/, 'ws')}/__preview/sync`;
}

/** Opens the daemon's sync socket (authenticated) as a raw WebSocket, for relaying frames unparsed. */
export function openDaemonSocket(upstream: string, token: string): WebSocket {
  return new WebSocket(syncUrl(upstream), {
    headers: { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
    maxPayload: LIMITS.frameBytes,
  });
}

/** The link a claimer keeps to a sandbox's daemon: loads, edits and the daemon's status frames. */
export function linkTo(box: { upstream: string; daemonToken: string }): DaemonLink {
  return new DaemonLink({ url: syncUrl(box.upstream), token: box.daemonToken });
}
