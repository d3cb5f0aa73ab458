import { createHash } from 'node:crypto';
import { ConflictError, PreviewError } from '@preview/tiers';
import type pg from 'pg';

/** One file's next state in a write: its bytes, or gone. `seq` is the global seq of the write. */
export type FileChange = { kind: 'put'; content: Buffer; seq: number } | { kind: 'delete'; seq: number };

/**
 * One statement's worth of a write to `project_files`, in op order: a set of per-path changes (a
 * delete removes the path and every path under it: files and folders alike), or a rename (moves
 * the row of a file, or the rows of a folder).
 */
export type FileStep =
  | { kind: 'files'; files: Map<string, FileChange> }
  | { kind: 'rename'; from: string; to: string; seq: number };

/**
 * The writer's lease may have lapsed; the transaction was rolled back.
 * @example throw new FencedError('fenced', 'sync owner lease may have lapsed; not committing');
 */
export class FencedError extends PreviewError {
  constructor(code: 'fenced', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'FencedError';
  }
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What one write commits besides the files. */
export interface WriteMarks {
  /**
   * Raises `preview_sessions.last_seq` (and sets `last_edit_at`). Absent when the write holds no
   * edit (only refused batches): a refused batch changes neither.
   */
  lastSeq?: number | undefined;
  /** Editor client → highest client seq in the write: raises `sync_client_marks.persisted_seq`. */
  clients: ReadonlyMap<string, number>;
  /** Checked right before COMMIT; false rolls back with `FencedError`. */
  fence?: () => boolean;
}

/**
 * The sync hub's SQL: the floor of a preview's seq counter, an editor client's persisted mark, and
 * the write-behind transaction. Everything the hub and its persister read or write in Postgres.
 *
 * @example
 * const store = createPgSyncStore(pool);
 * await store.write(previewId, coalesce(entries), { lastSeq: 12, clients: new Map([['c1', 3]]) });
 */
export interface SyncStore {
  /** `preview_sessions.last_seq`: the highest global seq persisted (0 for an unknown preview). */
  lastSeq(previewId: string): Promise<number>;
  /** `sync_client_marks.persisted_seq` of one editor client (0 when none). */
  persistedMark(previewId: string, clientId: string): Promise<number>;
  /** Writes `steps` and `marks` in one transaction; resolves after COMMIT. @throws FencedError */
  write(previewId: string, steps: readonly FileStep[], marks: WriteMarks): Promise<void>;
  /**
   * A batch with no sandbox to apply it (a browser-tier preview): what validation accepted is
   * committed under the global seq `last_seq + 1` when `clientSeq` is above the client's mark.
   * Returns that global seq.
   * @throws ConflictError `stale_seq` / `duplicate_seq` (nothing written)
   */
  commitAccepted(
    previewId: string,
    batch: { client: string; clientSeq: number; steps(seq: number): FileStep[] },
  ): Promise<number>;
}

/**
 * `SyncStore` on Postgres (tables `project_files`, `preview_sessions`, `sync_client_marks`).
 */
export function createPgSyncStore(pool: pg.Pool): SyncStore {
  return {
    async lastSeq(previewId) {
      const r = await pool.query<{ last_seq: string }>(
        'SELECT last_seq FROM preview_sessions WHERE id = $1',
        [previewId],
      );
      return Number(r.rows[0]?.last_seq ?? 0);
    },
    async persistedMark(previewId, clientId) {
      const r = await pool.query<{ persisted_seq: string }>(
        'SELECT persisted_seq FROM sync_client_marks WHERE preview_id = $1 AND client_id = $2',
        [previewId, clientId],
      );
      return Number(r.rows[0]?.persisted_seq ?? 0);
    },
    async write(previewId, steps, marks) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        for (const step of steps)
          if (step.kind === 'rename') await renameRow(client, previewId, step);
          else await writeFiles(client, previewId, step.files);
        await raiseMarks(client, previewId, marks);
        // A writer that may have lost its lease (it stalled) must not commit over a newer owner's writes.
        if (marks.fence && !marks.fence())
          throw new FencedError('fenced', 'sync owner lease may have lapsed; not committing');
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK').catch(() => {});
        throw e;
      } finally {
        client.release();
      }
    },
    async commitAccepted(previewId, batch) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const s = await client.query<{ last_seq: string }>(
          'SELECT last_seq FROM preview_sessions WHERE id = $1 FOR UPDATE',
          [previewId],
        );
        const m = await client.query<{ persisted_seq: string }>(
          'SELECT persisted_seq FROM sync_client_marks WHERE preview_id = $1 AND client_id = $2',
          [previewId, batch.client],
        );
        const mark = Number(m.rows[0]?.persisted_seq ?? 0);
        if (batch.clientSeq <= mark)
          throw new ConflictError(
            batch.clientSeq === mark ? 'duplicate_seq' : 'stale_seq',
            batch.clientSeq === mark
              ? `seq ${mark} was already taken by this preview; nothing was written now`
              : `seq ${batch.clientSeq} is below ${mark}, the last seq this preview took from this client; nothing was written`,
          );
        const seq = Number(s.rows[0]?.last_seq ?? 0) + 1;
        for (const step of batch.steps(seq))
          if (step.kind === 'rename') await renameRow(client, previewId, step);
          else await writeFiles(client, previewId, step.files);
        await raiseMarks(client, previewId, {
          lastSeq: seq,
          clients: new Map([[batch.client, batch.clientSeq]]),
        });
        await client.query('COMMIT');
        return seq;
      } catch (e) {
        await client.query('ROLLBACK').catch(() => {});
        throw e;
      } finally {
        client.release();
      }
    },
  };
}

/** `path` is `$n` or under it (a file, or a folder's contents); no LIKE, so `%` and `_` are plain. */
const AT_OR_UNDER = (n: number) => `(path = $${n} OR left(path, length($${n}) + 1) = $${n} || '/')`;

/**
 * Moves a file's row, or every row of a folder, from `from` to `to`, replacing what was at `to` (the
 * sandbox refuses a rename onto a folder, so that is a file at most). A missing source is a no-op,
 * as in the sandbox (an idempotent replay): the target is left alone then.
 */
async function renameRow(
  db: pg.PoolClient,
  previewId: string,
  step: { from: string; to: string; seq: number },
): Promise<void> {
  await db.query(
    `DELETE FROM project_files WHERE preview_id = $1 AND ${AT_OR_UNDER(3)}
       AND EXISTS (SELECT 1 FROM project_files WHERE preview_id = $1 AND ${AT_OR_UNDER(2)})`,
    [previewId, step.from, step.to],
  );
  await db.query(
    `UPDATE project_files SET path = $3 || substr(path, length($2) + 1), seq = $4, updated_at = now()
     WHERE preview_id = $1 AND ${AT_OR_UNDER(2)}`,
    [previewId, step.from, step.to, step.seq],
  );
}

async function writeFiles(
  db: pg.PoolClient,
  previewId: string,
  files: ReadonlyMap<string, FileChange>,
): Promise<void> {
  const putPaths: string[] = [];
  const putContent: Buffer[] = [];
  const putHash: string[] = [];
  const putSize: number[] = [];
  const putSeq: number[] = [];
  const delPaths: string[] = [];
  for (const [path, f] of files) {
    if (f.kind === 'delete') delPaths.push(path);
    else {
      putPaths.push(path);
      putContent.push(f.content);
      putHash.push(sha256(f.content));
      putSize.push(f.content.length);
      putSeq.push(f.seq);
    }
  }
  // A deleted path takes everything under it along (a folder).
  if (delPaths.length)
    await db.query(
      `DELETE FROM project_files f USING unnest($2::text[]) AS d(p)
       WHERE f.preview_id = $1 AND (f.path = d.p OR left(f.path, length(d.p) + 1) = d.p || '/')`,
      [previewId, delPaths],
    );
  if (putPaths.length)
    await db.query(
      `INSERT INTO project_files (preview_id, path, content, content_hash, size, seq, updated_at)
       SELECT $1, p, c, h, s, q, now()
       FROM unnest($2::text[], $3::bytea[], $4::text[], $5::int[], $6::bigint[]) AS t(p, c, h, s, q)
       ON CONFLICT (preview_id, path) DO UPDATE SET content = EXCLUDED.content,
         content_hash = EXCLUDED.content_hash, size = EXCLUDED.size, seq = EXCLUDED.seq, updated_at = now()`,
      [previewId, putPaths, putContent, putHash, putSize, putSeq],
    );
}

async function raiseMarks(db: pg.PoolClient, previewId: string, marks: WriteMarks): Promise<void> {
  if (marks.lastSeq !== undefined)
    await db.query(
      'UPDATE preview_sessions SET last_seq = GREATEST(last_seq, $2), last_edit_at = now() WHERE id = $1',
      [previewId, marks.lastSeq],
    );
  if (marks.clients.size)
    await db.query(
      `INSERT INTO sync_client_marks (preview_id, client_id, persisted_seq)
       SELECT $1, c, s FROM unnest($2::text[], $3::bigint[]) AS t(c, s)
       ON CONFLICT (preview_id, client_id) DO UPDATE
         SET persisted_seq = GREATEST(sync_client_marks.persisted_seq, EXCLUDED.persisted_seq), updated_at = now()`,
      [previewId, [...marks.clients.keys()], [...marks.clients.values()]],
    );
}
