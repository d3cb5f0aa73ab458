import { readFileSync } from 'node:fs';
import type { BatchOrigin, ErrorFrame, FileBatch, FileOp, OriginOutcome, TemplateName } from '@preview/tiers';
import { coalesceOps, type Queued, takeRun } from './batch-runs.ts';
import { NODE_CODE } from './child-server.ts';
import { diskFullMessage } from './control.ts';
import { DEPS_FILES } from './deps.ts';
import type { HmrTracker } from './hmr-tracker.ts';
import type { DevLifecycle } from './lifecycle.ts';
import type { OriginLog } from './origin-log.ts';
import type { DaemonStatus, StatusSocket } from './status.ts';
import {
  type PathViolation,
  type ProjectIndex,
  ProjectView,
  type ValidateLimits,
  validateOps,
} from './validate.ts';
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

/** What a run decided for one of its batches; answered, in order, once the run's write is done. */
type Answer =
  | { kind: 'ack'; q: Queued; record: boolean }
  | { kind: 'refuse'; q: Queued; code: string; message: string };

/** A run's batches sorted out before anything is written. */
interface RunPlan {
  answers: Answer[];
  /** The batches to write, in order. */
  accepted: Queued[];
  /** The last applied seq once the run is written. */
  last: number;
}

/**
 * Applies file batches in seq order and answers each with an `ack` or an `error` frame
 * (PROTOCOL.md): replays and re-sent editor batches are answered without writing, bad paths and
 * sizes are refused naming the rule, a full disk is `disk_full`.
 *
 * A batch is taken in the tick it arrives (a microtask later), so a lone edit is validated, written
 * and acked at once (the edit path). Batches that arrive together (a backlog the socket delivered
 * at once) or while a write is running are taken as one run (`takeRun`): each is checked in order
 * on the project as the batches before it leave it, and the accepted ones are written together,
 * each path once (`coalesceOps`), then answered in order. So a sandbox that falls behind catches up
 * instead of writing every version of a file one after another. A run whose write fails is done
 * again one batch at a time, so each batch gets its own answer.
 *
 * @example
 * const batches = new BatchApplier(deps);
 * batches.enqueue(ws, frame, performance.now());
 */
export class BatchApplier {
  // -1: nothing applied yet. seq 0 is the claimer's initial project load (applied once); the
  // router's sync hub numbers edits from 1.
  #lastSeq = -1;
  readonly #pending: Queued[] = [];
  #scheduled = false;
  #writing = false;
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
    this.#pending.push({ ws, batch, t0 });
    if (this.#writing || this.#scheduled) return;
    this.#scheduled = true;
    // After the socket's current read: every frame it delivered at once joins the run.
    queueMicrotask(() => this.#drain());
  }

  #drain(): void {
    this.#scheduled = false;
    while (this.#pending.length > 0 && !this.#writing) {
      let writing: Promise<void> | undefined;
      try {
        writing = this.#applyRun(takeRun(this.#pending)) ?? undefined;
      } catch {
        // An unexpected failure of one run must not stop the batches behind it.
      }
      if (!writing) continue;
      this.#writing = true;
      void writing
        .catch(() => {})
        .finally(() => {
          this.#writing = false;
          this.#drain();
        });
    }
  }

  /** Writes a run; returns a promise when the write goes through the thread pool. */
  #applyRun(run: Queued[]): Promise<void> | undefined {
    const plan = this.#plan(run);
    if (plan.accepted.length === 0) {
      this.#lastSeq = plan.last;
      this.#answer(plan.answers);
      return undefined;
    }
    const { root, status, index, tracker, writer } = this.#d;
    const only = run.length === 1 ? run[0]!.batch : undefined;
    const seq0 = only?.seq === 0;
    const ops = only ? only.ops : coalesceOps(plan.accepted.map((q) => q.batch.ops));
    const { files, changed, pkg, startConfig } = batchTouches(root, ops, index.files);
    const restartOnLoad = RESTART_ON_LOAD.has(this.#d.template);
    // The claim's files (seq 0) or files that arrive before the dev server is up: a dev server
    // that hot-swaps code restarts with their configuration before it is reported ready.
    const reconfigure =
      startConfig &&
      (seq0 || status.phase !== 'ready' || CONFIG_READ_ONCE.has(this.#d.template)) &&
      !restartOnLoad;
    // Registered before the write: the watcher may fire before the ack goes out.
    for (const q of plan.accepted)
      tracker.applied(q.batch.seq, q.t0, only ? files : batchTouches(root, q.batch.ops, index.files).files);
    const done = () => {
      this.#lastSeq = plan.last;
      if (changed.length > 0 && status.phase === 'ready' && !pkg && !reconfigure)
        this.#d.lifecycle.dev?.notifyChanged?.(changed);
      this.#answer(plan.answers);
      // A Node server that is not serving yet (or not any more) runs these files only if it starts
      // after them; a ready one reloads through notifyChanged.
      const stale =
        restartOnLoad && (status.phase !== 'ready' || seq0) && files.some((f) => NODE_CODE.test(f));
      this.#d.lifecycle.afterApply(pkg, stale, reconfigure);
      this.#d.onApplied();
    };
    const failed = (e: unknown) => (only ? this.#failWrite(run[0]!, e) : this.#oneByOne(run));
    // The claim's files, before a dev server that learns of them only through its own watcher:
    // acked once it has them, so the claimer's first page is not built from the template's.
    const dev = this.#d.lifecycle.dev;
    if (seq0 && dev?.caughtUp && status.phase === 'ready' && !pkg && !reconfigure)
      return writer.apply(ops).then(async () => {
        await dev.caughtUp?.(files);
        done();
      }, failed);
    if (!(seq0 && dev?.caughtUp) && writer.isSmall(ops)) {
      try {
        writer.applySync(ops);
      } catch (e) {
        return failed(e) ?? undefined;
      }
      done();
      return undefined;
    }
    return writer.apply(ops).then(done, failed);
  }

  /**
   * Sorts a run's batches out in order, on the project as the accepted ones before each leave it:
   * replays and batches seen before are answered as before, the others checked; nothing is written.
   */
  #plan(run: Queued[]): RunPlan {
    const { root, index, limits, origins } = this.#d;
    const plan: RunPlan = { answers: [], accepted: [], last: this.#lastSeq };
    // Editor batches decided earlier in this run (the same one may come twice, under two seqs).
    const decided = new Map<string, OriginOutcome>();
    let view = ProjectView.of(root, index);
    for (const q of run) {
      const { seq, ops, origin } = q.batch;
      const key = origin && `${origin.client}\n${origin.seq}`;
      const before = key ? (decided.get(key) ?? origins.seen(origin)) : undefined;
      if (seq <= plan.last && !before) {
        // An editor batch this sandbox never applied, behind a newer one: sent by a sync owner that
        // has since been replaced (its bytes arrived late). Its place in the order is gone; it is not
        // applied and not acked (an ack would say it is on disk). The current owner sends it again.
        if (!origin) plan.answers.push({ kind: 'ack', q, record: false }); // replay: already on disk
        continue;
      }
      if (before) {
        // The same editor batch again, under a new seq: answer as the first time, write nothing.
        if (!before.applied)
          plan.answers.push({ kind: 'refuse', q, code: before.code, message: before.message });
        else {
          if (seq > plan.last) plan.last = seq;
          plan.answers.push({ kind: 'ack', q, record: false });
        }
        continue;
      }
      const next = view.fork();
      let refusal: { code: string; message: string } | undefined;
      try {
        const v = validateOps(root, ops, index, limits, next);
        if (v) refusal = { code: codeFor(v.rule), message: violationText(v) };
      } catch (e) {
        refusal = { code: 'write_failed', message: (e as Error).message };
      }
      if (refusal) {
        plan.answers.push({ kind: 'refuse', q, ...refusal });
        if (key) decided.set(key, { applied: false, ...refusal });
        continue;
      }
      view = next;
      plan.last = seq;
      plan.accepted.push(q);
      plan.answers.push({ kind: 'ack', q, record: true });
      if (key) decided.set(key, { applied: true });
    }
    return plan;
  }

  /** Sends a run's answers in order; accepted editor batches and every refusal go into the ledger. */
  #answer(answers: readonly Answer[]): void {
    for (const a of answers) {
      const { ws, batch } = a.q;
      if (a.kind === 'refuse') this.#refuse(ws, batch.seq, batch.origin, a.code, a.message);
      else {
        if (a.record && batch.origin) this.#d.origins.record(batch.origin);
        ws.send(ackText(batch.seq));
      }
    }
  }

  /** A run's write failed: each batch again on its own, in order, each answered for itself. */
  async #oneByOne(run: Queued[]): Promise<void> {
    for (const q of run) await this.#applyRun([q]);
  }

  /** One batch's write failed: a full disk is `disk_full`, anything else `write_failed`. */
  #failWrite(q: Queued, e: unknown): void {
    const { seq, origin } = q.batch;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT')
      this.#refuse(q.ws, seq, origin, 'disk_full', `batch ${seq}: ${diskFullMessage(this.#d.root)}`);
    else this.#refuse(q.ws, seq, origin, 'write_failed', `batch ${seq}: ${(e as Error).message}`);
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
