import { createHash } from 'node:crypto';
import {
  type Ack,
  ConflictError,
  contentBytes,
  type FileBatch,
  type FileOp,
  InvalidInputError,
  LIMITS,
  PreviewError,
  type ProjectFiles,
  TimeoutError,
} from '@preview/tiers';
import WebSocket from 'ws';

/**
 * Polls the daemon's health route until the dev server answered 200 (or, with `listening`, until the
 * daemon answers at all: it seeds the project before it listens, so its manifest is then right).
 */
export async function waitReady(
  upstream: string,
  options: {
    timeoutMs: number;
    signal?: AbortSignal;
    intervalMs?: number;
    isDead?: () => string | undefined;
    listening?: boolean;
  },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let last = '';
  let interval = options.intervalMs ?? 10;
  for (;;) {
    options.signal?.throwIfAborted();
    const dead = options.isDead?.();
    if (dead) throw new PreviewError('sandbox_failed', dead);
    try {
      const res = await fetch(`${upstream}/__preview/health`, { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      if (res.status === 200 || (options.listening && res.status === 503)) return;
      last = `${res.status} ${text.slice(0, 300)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline)
      throw new TimeoutError(`preview not ready after ${options.timeoutMs} ms (last health answer: ${last})`);
    await new Promise((r) => setTimeout(r, interval));
    interval = Math.min(interval * 1.5, 40);
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
  if (res.status === 409) throw new ConflictError(message, { code });
  throw new PreviewError('daemon_error', `daemon env answered ${res.status}: ${message}`);
}

/** A daemon error frame as an error: bad input from the caller stays `InvalidInputError` (400). */
function daemonError(code = 'daemon_error', message = 'daemon rejected the batch'): PreviewError {
  return code === 'invalid_path' || code === 'too_large' || code === 'invalid_frame'
    ? new InvalidInputError(code, message)
    : new PreviewError(code, message);
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

/** Opens the daemon's sync socket (authenticated). */
export function openDaemonSocket(upstream: string, token: string): WebSocket {
  return new WebSocket(syncUrl(upstream), {
    headers: { authorization: `Bearer ${token}` },
    perMessageDeflate: false,
    maxPayload: LIMITS.frameBytes,
  });
}

/**
 * One request/response connection to a daemon's sync socket, used by the agent for claims and the
 * HTTP `apply` route: `send(batch)` resolves with the daemon's `applied` ack for that seq or rejects
 * with its error frame.
 */
export class DaemonLink {
  #ws: WebSocket | undefined;
  #opening: Promise<WebSocket> | undefined;
  #waiting = new Map<number, { resolve: (a: Ack) => void; reject: (e: Error) => void }>();
  #upstream: string;
  #token: string;

  constructor(upstream: string, token: string) {
    this.#upstream = upstream;
    this.#token = token;
  }

  /** Opens the socket ahead of the first batch (warm pools do, to keep the handshake off the claim). */
  async connect(): Promise<void> {
    await this.#open();
  }

  #open(): Promise<WebSocket> {
    if (this.#ws?.readyState === WebSocket.OPEN) return Promise.resolve(this.#ws);
    this.#opening ??= new Promise<WebSocket>((resolve, reject) => {
      const ws = openDaemonSocket(this.#upstream, this.#token);
      ws.once('open', () => {
        this.#ws = ws;
        this.#opening = undefined;
        ws.send(JSON.stringify({ type: 'hello', lastAckedSeq: 0 }));
        resolve(ws);
      });
      ws.once('error', (e) => {
        this.#opening = undefined;
        reject(new PreviewError('daemon_unreachable', `daemon sync socket: ${e.message}`));
      });
      ws.on('message', (data) => this.#onMessage(String(data)));
      ws.on('close', () => {
        if (this.#ws === ws) this.#ws = undefined;
        for (const w of this.#waiting.values())
          w.reject(new PreviewError('daemon_closed', 'daemon sync socket closed before the ack'));
        this.#waiting.clear();
      });
    });
    return this.#opening;
  }

  #onMessage(text: string): void {
    let f: { type?: string; seq?: number; stage?: string; code?: string; message?: string };
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof f.seq !== 'number') {
      // An error without a seq concerns the last batch in flight.
      if (f.type === 'error' && this.#waiting.size === 1) {
        const [seq, w] = [...this.#waiting][0]!;
        this.#waiting.delete(seq);
        w.reject(daemonError(f.code, f.message));
      }
      return;
    }
    const w = this.#waiting.get(f.seq);
    if (!w) return;
    if (f.type === 'ack' && f.stage === 'applied') {
      this.#waiting.delete(f.seq);
      w.resolve({ type: 'ack', seq: f.seq, stage: 'applied' });
    } else if (f.type === 'error') {
      this.#waiting.delete(f.seq);
      w.reject(daemonError(f.code, f.message));
    }
  }

  async send(batch: FileBatch, timeoutMs = 30_000): Promise<Ack> {
    const ws = await this.#open();
    return new Promise<Ack>((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiting.delete(batch.seq);
        reject(new TimeoutError(`no ack for batch ${batch.seq} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(batch.seq, {
        resolve: (a) => {
          clearTimeout(t);
          resolve(a);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      ws.send(JSON.stringify(batch));
    });
  }

  close(): void {
    this.#ws?.close();
    this.#ws = undefined;
  }
}
