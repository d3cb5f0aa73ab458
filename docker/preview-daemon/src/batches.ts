import { readFileSync } from 'node:fs';
import type { BatchOrigin, ErrorFrame, FileBatch, FileOp, TemplateName } from '@preview/tiers';
import { NODE_CODE } from './child-server.ts';
import { diskFullMessage } from './control.ts';
import { DEPS_FILES } from './deps.ts';
import type { HmrTracker } from './hmr-tracker.ts';
import type { DevLifecycle } from './lifecycle.ts';
import type { OriginLog } from './origin-log.ts';
import type { DaemonStatus, StatusSocket } from './status.ts';
import { type PathViolation, type ProjectIndex, type ValidateLimits, validateOps } from './validate.ts';
import type { ProjectWriter } from './writer.ts';

/** Templates whose dev server runs the user's code without hot-swapping it (a Node server). */
export const RESTART_ON_LOAD: ReadonlySet<TemplateName> = new Set(['express-pg']);

/**
 * Root files a dev server reads once at start (its config, the TypeScript paths, the HTML entry,
 * the env files). One of them arriving with the claim's files, or before the dev server is ready,
 * restarts it before `ready`: otherwise its own watcher restarts it or reloads the page just after
 * a browser opened it.
 */
export const START_CONFIG =
  /^(?:(?:vite|next|postcss|tailwind|babel|metro)\.config\.[cm]?[jt]s|tsconfig(?:\.[\w-]+)?\.json|jsconfig\.json|index\.html|\.env(?:\.[\w-]+)?|\.babelrc)$/;

/**
 * Templates whose dev server reads its configuration once and never again: Metro loads
 * metro.config.* and the Babel config at start. An edit of a {@link START_CONFIG} file restarts it
 * whenever it lands, not only before `ready` (Vite and Next restart themselves on config edits).
 */
export const CONFIG_READ_ONCE: ReadonlySet<TemplateName> = new Set(['expo']);

/** What a batch touches, read from its ops before they are written. */
export interface BatchTouches {
  /** Every absolute path the batch writes, deletes, or renames from or to. */
  files: string[];
  /** Rewrites of files that already exist (absolute): announced to the dev server after the write. */
  changed: string[];
  /** A dependency file (package.json, a lockfile) is among them. */
  pkg: boolean;
  /** A file a dev server reads once at start ({@link START_CONFIG}) is among them. */
  startConfig: boolean;
}

/** What `ops` touch under `root`; `existing` holds the project-relative paths of the files already there. */
export function batchTouches(
  root: string,
  ops: readonly FileOp[],
  existing: { has(path: string): boolean },
): BatchTouches {
  const t: BatchTouches = { files: [], changed: [], pkg: false, startConfig: false };
  for (const op of ops) {
    if (op.op === 'rename') {
      t.files.push(`${root}/${op.from}`, `${root}/${op.to}`);
      if (DEPS_FILES.has(op.from) || DEPS_FILES.has(op.to)) t.pkg = true;
      if (START_CONFIG.test(op.from) || START_CONFIG.test(op.to)) t.startConfig = true;
    } else {
      const abs = `${root}/${op.path}`;
      t.files.push(abs);
      if (op.op === 'put' && existing.has(op.path)) t.changed.push(abs);
      if (DEPS_FILES.has(op.path)) t.pkg = true;
      if (START_CONFIG.test(op.path) && !(op.op === 'put' && sameHtmlEntries(abs, op, existing.has(op.path))))
        t.startConfig = true;
    }
  }
  return t;
}

/**
 * The script elements of an HTML page (tags and inline code, in order): what Vite's dependency
 * scan starts from when it runs at start. The rest of the page Vite reads on every request.
 */
export function htmlScripts(html: string): string[] {
  return [...html.matchAll(/<script\b[^>]*>[\s\S]*?<\/script\s*>/gi)].map((m) => m[0]);
}

/**
 * True when `op` rewrites the root `index.html` (at `abs`, already on disk) keeping its scripts: a
 * new title or body needs no dev-server restart (a restart costs the claim tens of milliseconds).
 */
function sameHtmlEntries(
  abs: string,
  op: { path: string; content: string; encoding?: string },
  exists: boolean,
) {
  if (op.path !== 'index.html' || !exists) return false;
  let before: string;
  try {
    before = readFileSync(abs, 'utf8');
  } catch {
    return false;
  }
  const after = op.encoding === 'base64' ? Buffer.from(op.content, 'base64').toString('utf8') : op.content;
  const a = htmlScripts(before);
  const b = htmlScripts(after);
  return a.length === b.length && a.every((tag, i) => tag === b[i]);
}

/** The `ack` frame (stage `applied`) of batch `seq`, as JSON text. */
export function ackText(seq: number): string {
  return `{"type":"ack","seq":${seq},"stage":"applied"}`;
}

/** An `error` frame as JSON text. */
export function errorText(e: Omit<ErrorFrame, 'type'>): string {
  return JSON.stringify({ type: 'error', ...e });
}

/** The wire code of a validation rule: `too_large`, `too_many_files` or `invalid_path` (PROTOCOL.md). */
export function codeFor(rule: string): string {
  if (rule === 'file_size' || rule === 'project_size' || rule === 'batch_size') return 'too_large';
  if (rule === 'too_many_files' || rule === 'batch_ops') return 'too_many_files';
  return 'invalid_path';
}

/** A violation as an error message: the path, what is wrong, and the rule's name. */
export function violationText(v: PathViolation): string {
  return `${JSON.stringify(v.path)}: ${v.message} (rule ${v.rule})`;
}

/** What the batch applier needs. */
export interface BatchApplierDeps {
  /** The project directory (real path). */
  root: string;
  template: TemplateName;
  limits: ValidateLimits;
  index: ProjectIndex;
  writer: ProjectWriter;
  /** Editor batches already processed, so one re-sent under a new seq is not applied twice. */
  origins: OriginLog;
  tracker: HmrTracker;
  status: DaemonStatus;
  lifecycle: Pick<DevLifecycle, 'dev' | 'afterApply'>;
  /** Called after each applied batch (idle collection). */
  onApplied: () => void;
}

/**
 * Applies file batches in seq order and answers each with an `ack` or an `error` frame
 * (PROTOCOL.md): replays and re-sent editor batches are answered without writing, bad paths and
 * sizes are refused naming the rule, a full disk is `disk_full`. A small batch with nothing queued
 * ahead of it is validated, written and acked in the same tick (the edit path).
 *
 * @example
 * const batches = new BatchApplier(deps);
 * batches.enqueue(ws, frame, performance.now());
 */
export class BatchApplier {
  // -1: nothing applied yet. seq 0 is the claimer's initial project load (applied once); the
  // router's sync hub numbers edits from 1.
  #lastSeq = -1;
  #queued = 0;
  #queue: Promise<void> = Promise.resolve();
  readonly #d: BatchApplierDeps;

  constructor(deps: BatchApplierDeps) {
    this.#d = deps;
  }

  /** The highest seq applied; -1 before the first batch. */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Takes a batch that arrived at `t0` (performance.now()) on socket `ws`. */
  enqueue(ws: StatusSocket, batch: FileBatch, t0: number): void {
    // The claim's files wait for a dev server that must catch up before they are acked (Metro).
    const catchUp = batch.seq === 0 && this.#d.lifecycle.dev?.caughtUp !== undefined;
    if (this.#queued === 0 && !catchUp && this.#d.writer.isSmall(batch.ops)) {
      this.#apply(ws, batch, t0, true);
      return;
    }
    this.#queued++;
    this.#queue = this.#queue
      .then(() => this.#apply(ws, batch, t0, false))
      .catch(() => {})
      .finally(() => {
        this.#queued--;
      });
  }

  #apply(ws: StatusSocket, batch: FileBatch, t0: number, sync: true): void;
  #apply(ws: StatusSocket, batch: FileBatch, t0: number, sync: false): Promise<void>;
  #apply(ws: StatusSocket, batch: FileBatch, t0: number, sync: boolean): void | Promise<void> {
    const { seq, ops, origin } = batch;
    const { root, status } = this.#d;
    const before = origin && this.#d.origins.seen(origin);
    if (seq <= this.#lastSeq && !before) {
      // An editor batch this sandbox never applied, behind a newer one: sent by a sync owner that
      // has since been replaced (its bytes arrived late). Its place in the order is gone; it is not
      // applied and not acked (an ack would say it is on disk). The current owner sends it again.
      if (origin) return;
      ws.send(ackText(seq)); // replay: already on disk
      return;
    }
    if (before) {
      // The same editor batch again, under a new seq: answer as the first time, write nothing.
      if (!before.applied) return this.#refuse(ws, seq, origin, before.code, before.message);
      if (seq > this.#lastSeq) this.#lastSeq = seq;
      ws.send(ackText(seq));
      return;
    }
    let violation: PathViolation | undefined;
    try {
      violation = validateOps(root, ops, this.#d.index, this.#d.limits);
    } catch (e) {
      return this.#refuse(ws, seq, origin, 'write_failed', (e as Error).message);
    }
    if (violation) return this.#refuse(ws, seq, origin, codeFor(violation.rule), violationText(violation));
    const { files, changed, pkg, startConfig } = batchTouches(root, ops, this.#d.index.files);
    const restartOnLoad = RESTART_ON_LOAD.has(this.#d.template);
    // The claim's files (seq 0) or files that arrive before the dev server is up: a dev server
    // that hot-swaps code restarts with their configuration before it is reported ready.
    const reconfigure =
      startConfig &&
      (seq === 0 || status.phase !== 'ready' || CONFIG_READ_ONCE.has(this.#d.template)) &&
      !restartOnLoad;
    // Registered before the write: the watcher may fire before the ack goes out.
    this.#d.tracker.applied(seq, t0, files);
    const done = () => {
      this.#lastSeq = seq;
      if (origin) this.#d.origins.record(origin);
      if (changed.length > 0 && status.phase === 'ready' && !pkg && !reconfigure)
        this.#d.lifecycle.dev?.notifyChanged?.(changed);
      ws.send(ackText(seq));
      // A Node server that is not serving yet (or not any more) runs these files only if it starts
      // after them; a ready one reloads through notifyChanged.
      const stale =
        restartOnLoad && (status.phase !== 'ready' || seq === 0) && files.some((f) => NODE_CODE.test(f));
      this.#d.lifecycle.afterApply(pkg, stale, reconfigure);
      this.#d.onApplied();
    };
    const failed = (e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT')
        return this.#refuse(ws, seq, origin, 'disk_full', `batch ${seq}: ${diskFullMessage(root)}`);
      this.#refuse(ws, seq, origin, 'write_failed', `batch ${seq}: ${(e as Error).message}`);
    };
    if (sync) {
      try {
        this.#d.writer.applySync(ops);
      } catch (e) {
        return failed(e);
      }
      return done();
    }
    // The claim's files, before a dev server that learns of them only through its own watcher:
    // acked once it has them, so the claimer's first page is not built from the template's.
    const dev = this.#d.lifecycle.dev;
    if (seq === 0 && dev?.caughtUp && status.phase === 'ready' && !pkg && !reconfigure)
      return this.#d.writer.apply(ops).then(async () => {
        await dev.caughtUp?.(files);
        done();
      }, failed);
    return this.#d.writer.apply(ops).then(done, failed);
  }

  /** Answers a batch that is not applied; an editor batch is answered the same way if it comes again. */
  #refuse(
    ws: StatusSocket,
    seq: number,
    origin: BatchOrigin | undefined,
    code: string,
    message: string,
  ): void {
    if (origin) this.#d.origins.record(origin, { code, message });
    ws.send(errorText({ code, message, seq }));
  }
}
