import { createHash } from 'node:crypto';
import type { FileOp } from '@preview/tiers';
import type pg from 'pg';

/** One applied batch waiting to be written to `project_files`. */
export interface PersistEntry {
  /** Global (per-preview) sequence number the sandbox applied it under. */
  seq: number;
  ops: readonly FileOp[];
  clientId: string;
  clientSeq: number;
}

type Put = { kind: 'put'; content: Buffer; seq: number };
type Del = { kind: 'delete'; seq: number };
type Step =
  | { kind: 'files'; files: Map<string, Put | Del> }
  | { kind: 'rename'; from: string; to: string; seq: number };

/**
 * Turns an ordered run of ops into as few statements as possible: puts and deletes to the same path
 * collapse to the last one; a rename whose source is still in the current run becomes a put + delete;
 * any other rename is a step of its own so that the order of the statements matches the order of the
 * ops for every path it touches.
 */
export function coalesce(entries: readonly PersistEntry[]): Step[] {
  const steps: Step[] = [];
  let files = new Map<string, Put | Del>();
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

/** The writer's lease may have lapsed; the transaction was rolled back. */
export class FencedError extends Error {
  constructor() {
    super('sync owner lease may have lapsed; not committing');
    this.name = 'FencedError';
  }
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Writes steps for one preview in one transaction; returns after COMMIT. `lastSeq` raises
 * `preview_sessions.last_seq` and `last_edit_at`, and `marks` (client → highest client seq in the
 * steps) raises `sync_client_marks`, in the same transaction.
 */
export async function writeSteps(
  pool: pg.Pool,
  previewId: string,
  steps: Step[],
  lastSeq: number,
  marks: ReadonlyMap<string, number> = new Map(),
  fence: () => boolean = () => true,
): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    for (const step of steps) {
      if (step.kind === 'rename') {
        // Moves the row if the source exists; a missing source is a no-op (idempotent replay).
        await client.query(
          `WITH src AS (
             DELETE FROM project_files WHERE preview_id = $1 AND path = $2
             RETURNING content, content_hash, size
           )
           INSERT INTO project_files (preview_id, path, content, content_hash, size, seq, updated_at)
           SELECT $1, $3, content, content_hash, size, $4, now() FROM src
           ON CONFLICT (preview_id, path) DO UPDATE SET content = EXCLUDED.content,
             content_hash = EXCLUDED.content_hash, size = EXCLUDED.size, seq = EXCLUDED.seq, updated_at = now()`,
          [previewId, step.from, step.to, step.seq],
        );
        continue;
      }
      const putPaths: string[] = [];
      const putContent: Buffer[] = [];
      const putHash: string[] = [];
      const putSize: number[] = [];
      const putSeq: number[] = [];
      const delPaths: string[] = [];
      for (const [path, f] of step.files) {
        if (f.kind === 'delete') delPaths.push(path);
        else {
          putPaths.push(path);
          putContent.push(f.content);
          putHash.push(sha256(f.content));
          putSize.push(f.content.length);
          putSeq.push(f.seq);
        }
      }
      if (delPaths.length)
        await client.query('DELETE FROM project_files WHERE preview_id = $1 AND path = ANY($2::text[])', [
          previewId,
          delPaths,
        ]);
      if (putPaths.length)
        await client.query(
          `INSERT INTO project_files (preview_id, path, content, content_hash, size, seq, updated_at)
           SELECT $1, p, c, h, s, q, now()
           FROM unnest($2::text[], $3::bytea[], $4::text[], $5::int[], $6::bigint[]) AS t(p, c, h, s, q)
           ON CONFLICT (preview_id, path) DO UPDATE SET content = EXCLUDED.content,
             content_hash = EXCLUDED.content_hash, size = EXCLUDED.size, seq = EXCLUDED.seq, updated_at = now()`,
          [previewId, putPaths, putContent, putHash, putSize, putSeq],
        );
    }
    await client.query(
      'UPDATE preview_sessions SET last_seq = GREATEST(last_seq, $2), last_edit_at = now() WHERE id = $1',
      [previewId, lastSeq],
    );
    if (marks.size)
      await client.query(
        `INSERT INTO sync_client_marks (preview_id, client_id, persisted_seq)
         SELECT $1, c, s FROM unnest($2::text[], $3::bigint[]) AS t(c, s)
         ON CONFLICT (preview_id, client_id) DO UPDATE
           SET persisted_seq = GREATEST(sync_client_marks.persisted_seq, EXCLUDED.persisted_seq), updated_at = now()`,
        [previewId, [...marks.keys()], [...marks.values()]],
      );
    // A writer that may have lost its lease (it stalled) must not commit over a newer owner's writes.
    if (!fence()) throw new FencedError();
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
}

export interface PersisterOptions {
  pool: pg.Pool;
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
  const { pool, previewId } = options;
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
      const lastSeq = batch.reduce((m, e) => Math.max(m, e.seq), 0);
      const byClient = new Map<string, number>();
      for (const e of batch)
        if ((byClient.get(e.clientId) ?? 0) < e.clientSeq) byClient.set(e.clientId, e.clientSeq);
      await writeSteps(pool, previewId, coalesce(batch), lastSeq, byClient, options.fence);
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
