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
 * Turns an ordered run of ops into as few statements as possible: puts and deletes to the same path
 * collapse to the last one; a rename whose source is still in the current run becomes a put + delete;
 * any other rename is a step of its own so that the order of the statements matches the order of the
 * ops for every path it touches.
 */
export function coalesce(entries: readonly PersistEntry[]): FileStep[] {
  const steps: FileStep[] = [];
  let files = new Map<string, FileChange>();
  for (const e of entries) {
    for (const op of e.ops) {
      if (op.op === 'put') {
        files.set(op.path, {
          kind: 'put',
          content: Buffer.from(op.content, op.encoding === 'base64' ? 'base64' : 'utf8'),
          seq: e.seq,
        });
      } else if (op.op === 'delete') {
        files.set(op.path, { kind: 'delete', seq: e.seq });
      } else if (op.from === op.to) {
        // a rename onto itself changes nothing
      } else {
        const src = files.get(op.from);
        if (src?.kind === 'put') {
          files.set(op.to, { ...src, seq: e.seq });
          files.set(op.from, { kind: 'delete', seq: e.seq });
        } else if (src?.kind === 'delete') {
          // the source is already gone in this run: the sandbox would have rejected the batch, so
          // this only happens on an idempotent replay; nothing to move.
        } else {
          if (files.size) steps.push({ kind: 'files', files });
          files = new Map();
          steps.push({ kind: 'rename', from: op.from, to: op.to, seq: e.seq });
        }
      }
    }
  }
  if (files.size) steps.push({ kind: 'files', files });
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
  /** Gathers edits for this long before a flush (coalescing window). */
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
  let failures = 0;
  let closed = false;
  let idle: Array<() => void> = [];

  const schedule = (ms: number) => {
    if (timer || running || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void flush();
    }, ms);
  };

  async function flush(): Promise<void> {
    if (running || queue.length === 0) return;
    running = true;
    const batch = queue;
    queue = [];
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
      if (queue.length) schedule(failures ? Math.min(5000, 50 * 2 ** failures) : delay);
      else for (const f of idle.splice(0)) f();
    }
  }

  return {
    enqueue(entry: PersistEntry) {
      queue.push(entry);
      schedule(delay);
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
