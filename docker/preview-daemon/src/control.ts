import { createHash, timingSafeEqual } from 'node:crypto';
import { statfsSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AppEnvironment, handleEnvRequest } from './app-env.ts';
import type { Manifest } from './project-scan.ts';
import { handleScriptRequest, type ScriptRunner } from './scripts.ts';
import type { DaemonStatus } from './status.ts';

/** Below this much free space (bytes) the project directory counts as full. */
export const DISK_FULL_BYTES = 1024 * 1024;

/** What the control routes read and call. */
export interface ControlContext {
  /** The project directory (real path). */
  root: string;
  /** SHA-256 of the daemon's bearer token (see {@link digest}). */
  tokenDigest: Buffer;
  status: DaemonStatus;
  /** The highest seq applied; -1 before the first batch. */
  lastSeq: () => number;
  manifest: Manifest;
  appEnv: AppEnvironment;
  /** Called once `PUT /__preview/env` applied a new environment. */
  onEnvApplied: () => void;
  /** Runs the project's npm scripts (`POST /__preview/scripts/<name>`). */
  scripts: ScriptRunner;
}

/**
 * The daemon's own routes under `/__preview/` (PROTOCOL.md): `health` (open: 200 when ready, else
 * 503 with the phase), and behind the bearer token `status` (phase, disk, log tail, last seq),
 * `manifest` (the project's files and hashes), `env` (the app's environment) and `scripts/<name>`
 * (POST: runs the project's npm script with the app's environment). Any other path is 404.
 *
 * @example
 * if (url.startsWith('/__preview/')) return handleControl(ctx, req, res, url);
 */
export function handleControl(ctx: ControlContext, req: IncomingMessage, res: ServerResponse, url: string) {
  const path = url.split('?')[0];
  const { phase, message } = ctx.status;
  if (path === '/__preview/health') {
    const ok = phase === 'ready';
    return json(res, ok ? 200 : 503, { ok, phase, ...(ok || !message ? {} : { message }) });
  }
  const script = path?.startsWith(SCRIPTS) ? decodeURIComponent(path.slice(SCRIPTS.length)) : undefined;
  if (
    path !== '/__preview/status' &&
    path !== '/__preview/manifest' &&
    path !== '/__preview/env' &&
    script === undefined
  )
    return json(res, 404, { error: { code: 'not_found', message: `no route ${path}` } });
  if (!authorized(req, ctx.tokenDigest))
    return json(res, 401, { error: { code: 'unauthorized', message: 'a valid bearer token is required' } });
  if (script !== undefined) return handleScriptRequest(ctx.scripts, script, req, res);
  if (path === '/__preview/env') return handleEnvRequest(req, res, ctx.appEnv, ctx.onEnvApplied);
  if (path === '/__preview/status') return json(res, 200, statusBody(ctx));
  ctx.manifest.compute().then(
    (files) => json(res, 200, { files }),
    (e: Error) => json(res, 500, { error: { code: 'internal', message: e.message } }),
  );
}

const SCRIPTS = '/__preview/scripts/';

/** The body of `GET /__preview/status`. A full project directory reads `error` whatever the phase. */
function statusBody(ctx: ControlContext): object {
  const { phase, message, ring } = ctx.status;
  const lastSeq = Math.max(ctx.lastSeq(), 0);
  // App code can fill the project directory too (its size is capped by the agent): say so.
  const disk = projectDisk(ctx.root);
  if (disk && disk.freeBytes < DISK_FULL_BYTES)
    return { phase: 'error', message: diskFullMessage(ctx.root), disk, log: ring.tail(100), lastSeq };
  return {
    phase,
    ...(message ? { message } : {}),
    ...(disk ? { disk } : {}),
    log: ring.tail(100),
    lastSeq,
  };
}

/** SHA-256 of `s`: tokens are compared as digests. */
export function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * True when the request carries the daemon's token: `Authorization: Bearer <token>`, or (for
 * WebSockets, which cannot set headers in a browser) a `token` query parameter.
 */
export function authorized(req: IncomingMessage, tokenDigest: Buffer): boolean {
  let token: string | undefined;
  const h = req.headers.authorization;
  if (h?.startsWith('Bearer ')) token = h.slice(7);
  else {
    const q = (req.url ?? '').indexOf('?');
    if (q >= 0) token = new URLSearchParams(req.url!.slice(q + 1)).get('token') ?? undefined;
  }
  // Compare digests: equal length, constant time, no length oracle.
  return token !== undefined && timingSafeEqual(digest(token), tokenDigest);
}

function json(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

/**
 * The file system holding the project directory: its size and what an unprivileged writer may
 * still use, in bytes; undefined when it cannot be read.
 */
export function projectDisk(root: string): { totalBytes: number; freeBytes: number } | undefined {
  try {
    const s = statfsSync(root);
    return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
  } catch {
    return undefined;
  }
}

/** The message of a full project directory, with its size in MiB when it can be read. */
export function diskFullMessage(root: string): string {
  const d = projectDisk(root);
  const size = d ? ` (${Math.round(d.totalBytes / 1048576)} MiB)` : '';
  return `the project directory is full${size}: writes fail with ENOSPC; delete files or ask for a larger PREVIEW_DISK_MB`;
}
