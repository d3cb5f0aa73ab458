import type { FileOp } from '@preview/tiers';
import type { FileChange, FileStep, SyncStore } from '../store/project-files.ts';

/** One applied batch waiting to be written to `project_files`. */
export interface PersistEntry {
  /** Global (per-preview) sequence number the sandbox applied it under. */
  seq: number;
  ops: readonly FileOp[];
  clientId: string;
  clientSeq: number;
}

/**
 * Turns an ordered run of ops into as few statements as possible, in an order that gives the same
 * result as the ops one by one. Paths name files or folders alike, as in the sandbox: a delete
 * removes the path and everything under it, a rename moves a file or a whole folder.
 *
 * - Puts and deletes collect in one step (`files`: its deletes run before its puts). A later op on a
 *   path replaces an earlier one; a delete drops earlier puts under it (it removes them anyway).
 * - A put of a path deleted earlier in the step starts a new step: the delete may have removed a
 *   folder's rows under that path, which the put alone would not.
 * - A rename is a step of its own, at its place in the order.
 */
export function coalesce(entries: readonly PersistEntry[]): FileStep[] {
  const steps: FileStep[] = [];
  let files = new Map<string, FileChange>();
  const cut = () => {
    if (files.size) steps.push({ kind: 'files', files });
    files = new Map();
  };
  for (const e of entries) {
    for (const op of e.ops) {
      if (op.op === 'put') {
        if (files.get(op.path)?.kind === 'delete') cut();
        files.set(op.path, {
          kind: 'put',
          content: Buffer.from(op.content, op.encoding === 'base64' ? 'base64' : 'utf8'),
          seq: e.seq,
        });
      } else if (op.op === 'delete') {
        const under = `${op.path}/`;
        for (const p of files.keys()) if (p.startsWith(under)) files.delete(p);
        files.set(op.path, { kind: 'delete', seq: e.seq });
      } else if (op.from !== op.to) {
        // A rename onto itself changes nothing.
        cut();
        steps.push({ kind: 'rename', from: op.from, to: op.to, seq: e.seq });
      }
    }
  }
  cut();
  return steps;
}

export interface PersisterOptions {
  store: SyncStore;
  previewId: string;
  /** Called after COMMIT with the highest client seq persisted per client. */
  onPersisted(byClient: Map<string, number>, lastSeq: number): void;
  onError(error: unknown): void;
  /** Checked right before COMMIT; false rolls the flush back (it is retried). */
  fence?: () => boolean;
  /** Gathers edits for this long before a flush (coalescing window, ms), unless `enqueue` names another. @default 5 */
  delayMs?: number;
}

/**
 * Write-behind queue of one preview. `enqueue` never awaits; one flush runs at a time, and whatever
 * arrives during a flush is coalesced into the next. A failed flush is retried with backoff, keeping
 * order.
 */
export function createPersister(options: PersisterOptions) {
  const { store, previewId } = options;
  const delay = options.delayMs ?? 5;
  let queue: PersistEntry[] = [];
  let running = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** When the scheduled flush fires (performance.now() ms); Infinity when none is. */
  let dueAt = Number.POSITIVE_INFINITY;
  /** The shortest delay asked for by what is queued and not yet being flushed. */
  let queuedDelay = Number.POSITIVE_INFINITY;
  let failures = 0;
  let closed = false;
  let idle: Array<() => void> = [];

  /**
   * Flushes in `ms`, or when the flush already scheduled is due if that is sooner (none while one
   * runs, and a retry's backoff is not cut short).
   */
  const schedule = (ms: number) => {
    if (running || closed) return;
    const at = performance.now() + ms;
    if (timer) {
      if (at >= dueAt || failures > 0) return;
      clearTimeout(timer);
    }
    dueAt = at;
    timer = setTimeout(() => {
      timer = undefined;
      dueAt = Number.POSITIVE_INFINITY;
      void flush();
    }, ms);
  };

  async function flush(): Promise<void> {
    if (running || queue.length === 0) return;
    running = true;
    const batch = queue;
    queue = [];
    queuedDelay = Number.POSITIVE_INFINITY;
    try {
      // A refused batch (no ops) moves the client's mark on, but changes no project state.
      const lastSeq = batch.reduce((m, e) => (e.ops.length ? Math.max(m, e.seq) : m), 0);
      const byClient = new Map<string, number>();
      for (const e of batch)
        if ((byClient.get(e.clientId) ?? 0) < e.clientSeq) byClient.set(e.clientId, e.clientSeq);
      await store.write(previewId, coalesce(batch), {
        lastSeq: lastSeq || undefined,
        clients: byClient,
        ...(options.fence ? { fence: options.fence } : {}),
      });
      failures = 0;
      options.onPersisted(byClient, lastSeq);
    } catch (e) {
      failures++;
      queue = batch.concat(queue);
      options.onError(e);
    } finally {
      running = false;
      if (failures) {
        // The failed batch is back at the head of the queue: it waits for the backoff, whatever
        // arrived meanwhile asked for.
        queuedDelay = Number.POSITIVE_INFINITY;
        schedule(Math.min(5000, 50 * 2 ** failures));
      } else if (queue.length) schedule(queuedDelay);
      else for (const f of idle.splice(0)) f();
    }
  }

  return {
    /**
     * Queues `entry`; the flush that takes it starts within `delayMs` (an earlier entry may have
     * asked for less). @default delayMs the persister's `delayMs`
     */
    enqueue(entry: PersistEntry, delayMs = delay) {
      queue.push(entry);
      if (delayMs < queuedDelay) queuedDelay = delayMs;
      schedule(delayMs);
    },
    get pending() {
      return queue.length;
    },
    /** Resolves when the queue is empty and no flush runs. */
    drained(): Promise<void> {
      if (!running && queue.length === 0) return Promise.resolve();
      return new Promise((r) => idle.push(r));
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const f of idle.splice(0)) f();
      idle = [];
    },
  };
}
export type Persister = ReturnType<typeof createPersister>;
