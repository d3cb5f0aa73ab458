import { LIVE_STATES } from '@preview/tiers';
import type pg from 'pg';
import { lockUser } from './sessions.ts';

/** A project as retention sees it (a row of `preview_projects`). */
export interface ProjectRef {
  userId: string;
  /** The editor's app id. */
  projectId: string;
  /** The id db-isolation names the project's schema after (`preview_<hex>`). */
  databaseId: string;
  /** The project's last use: see {@link LAST_USE}. */
  lastUsedAt: Date;
}

/** What {@link ProjectStore.purge} did. */
export type PurgeOutcome =
  | {
      outcome: 'purged';
      databaseId: string;
      /** Ids of the deleted preview sessions. */
      previews: string[];
      /** Stored files and events deleted with them. */
      files: number;
      events: number;
    }
  /** used at or after the cutoff (checked in the purge's transaction): kept */
  | { outcome: 'used'; lastUsedAt: Date }
  /** it has a live preview (the idle job ends it first): kept */
  | { outcome: 'live' }
  /** already purged (another run, another replica) */
  | { outcome: 'absent' };

/**
 * A project's last use: the latest of its own `last_used_at` (every open, `POST /v1/previews` with
 * the `projectId`) and its previews' last edit and last view (`preview_sessions.last_edit_at`,
 * `last_view_at`: editor pushes, page views, activity pings, wakes). SQL over `preview_projects p`.
 */
const LAST_USE = `greatest(p.last_used_at, (SELECT max(greatest(s.last_edit_at, s.last_view_at))
  FROM preview_sessions s WHERE s.user_id = p.user_id AND s.project_id = p.project_id))`;
/** SQL over `preview_projects p`: it has a live preview; `param` is the placeholder of LIVE_STATES. */
const hasLive = (param: string) => `EXISTS (SELECT 1 FROM preview_sessions s WHERE s.user_id = p.user_id
  AND s.project_id = p.project_id AND s.state = ANY(${param}))`;

/** An ended preview created without a `projectId`, as retention sees it. */
export interface EndedPreviewRef {
  /** The preview session's id (its schema, if it had one, is named after it). */
  previewId: string;
  userId: string;
  /** Its last use: see {@link ENDED_LAST_USE}. */
  lastUsedAt: Date;
}

/** What {@link ProjectStore.purgeEndedPreview} did. */
export type EndedPurgeOutcome =
  | { outcome: 'purged'; previewId: string; files: number; events: number }
  /** used at or after the cutoff (checked in the purge's transaction): kept */
  | { outcome: 'used'; lastUsedAt: Date }
  /** not ended (it never is again once ended; kept in case) */
  | { outcome: 'live' }
  /** already purged (another run, another replica), or a project's preview (purged with its project) */
  | { outcome: 'absent' };

/**
 * An ended preview's last use: the latest of its end (`ended_at`; `updated_at` for a row without
 * one), its last edit and its last view. SQL over `preview_sessions s`.
 */
const ENDED_LAST_USE = 'greatest(coalesce(s.ended_at, s.updated_at), s.last_edit_at, s.last_view_at)';

/**
 * Projects (`preview_projects`) for retention and the schema janitor. A project's rows (its preview
 * sessions, and by their foreign keys its stored files, events and sync marks) go together.
 */
export class ProjectStore {
  readonly pool: pg.Pool;
  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  /**
   * Projects last used before `before` with no live preview, least recently used first: retention's
   * candidates (each re-checked by {@link purge}).
   */
  async idle(before: Date, limit = 100): Promise<ProjectRef[]> {
    const { rows } = await this.pool.query<{
      user_id: string;
      project_id: string;
      database_id: string;
      last_use: Date;
    }>(
      `SELECT * FROM (
         SELECT p.user_id, p.project_id, p.database_id, ${LAST_USE} AS last_use
           FROM preview_projects p WHERE p.last_used_at < $1 AND NOT ${hasLive('$3')}
       ) x WHERE last_use < $1 ORDER BY last_use LIMIT $2`,
      [before, limit, LIVE_STATES],
    );
    return rows.map((r) => ({
      userId: r.user_id,
      projectId: r.project_id,
      databaseId: r.database_id,
      lastUsedAt: r.last_use,
    }));
  }

  /**
   * Deletes project (userId, projectId) with its preview sessions, stored files, events and sync
   * marks, in one transaction, unless it was used at or after `before` or has a live preview: the
   * last use is read in that transaction, under the user's create lock (`lockUser`, so no create of
   * the user runs meanwhile) and with the project's rows locked. Idempotent: a project already gone
   * is `absent`. Its database schema is the caller's to drop afterwards (`PurgeOutcome.databaseId`);
   * a drop that does not happen is finished by the schema janitor (the registry row then has neither
   * a session nor a project).
   */
  async purge(ref: { userId: string; projectId: string }, before: Date): Promise<PurgeOutcome> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await lockUser(client, ref.userId);
      const project = (
        await client.query<{ database_id: string }>(
          'SELECT database_id FROM preview_projects WHERE user_id = $1 AND project_id = $2 FOR UPDATE',
          [ref.userId, ref.projectId],
        )
      ).rows[0];
      if (!project) {
        await client.query('COMMIT');
        return { outcome: 'absent' };
      }
      const sessions = await client.query<{ id: string }>(
        'SELECT id::text FROM preview_sessions WHERE user_id = $1 AND project_id = $2 FOR UPDATE',
        [ref.userId, ref.projectId],
      );
      const use = (
        await client.query<{ last_use: Date; live: boolean }>(
          `SELECT ${LAST_USE} AS last_use, ${hasLive('$3')} AS live
             FROM preview_projects p WHERE p.user_id = $1 AND p.project_id = $2`,
          [ref.userId, ref.projectId, LIVE_STATES],
        )
      ).rows[0]!;
      if (use.live || use.last_use >= before) {
        await client.query('ROLLBACK');
        return use.live ? { outcome: 'live' } : { outcome: 'used', lastUsedAt: use.last_use };
      }
      const ids = sessions.rows.map((r) => r.id);
      const counts = (
        await client.query<{ files: number; events: number }>(
          `SELECT (SELECT count(*)::int FROM project_files WHERE preview_id = ANY($1::uuid[])) AS files,
                  (SELECT count(*)::int FROM preview_events WHERE preview_id = ANY($1::uuid[])) AS events`,
          [ids],
        )
      ).rows[0]!;
      // ON DELETE CASCADE: the sessions, then their files, events and sync marks.
      await client.query('DELETE FROM preview_projects WHERE user_id = $1 AND project_id = $2', [
        ref.userId,
        ref.projectId,
      ]);
      await client.query('COMMIT');
      return { outcome: 'purged', databaseId: project.database_id, previews: ids, ...counts };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  /**
   * Ended previews created without a `projectId` whose last use is before `before`, least recently
   * used first: retention's candidates among previews no project owns (each re-checked by
   * {@link purgeEndedPreview}).
   */
  async idleEndedPreviews(before: Date, limit = 100): Promise<EndedPreviewRef[]> {
    const { rows } = await this.pool.query<{ id: string; user_id: string; last_use: Date }>(
      `SELECT s.id::text, s.user_id, ${ENDED_LAST_USE} AS last_use FROM preview_sessions s
        WHERE s.project_id IS NULL AND s.state = 'ended' AND ${ENDED_LAST_USE} < $1
        ORDER BY last_use LIMIT $2`,
      [before, limit],
    );
    return rows.map((r) => ({ previewId: r.id, userId: r.user_id, lastUsedAt: r.last_use }));
  }

  /**
   * Deletes ended preview `previewId` (no project) with its stored files, events and sync marks, in one
   * transaction, unless it was used at or after `before`: its row is locked and its last use read in
   * that transaction. Idempotent: a preview already gone (or one of a project) is `absent`. Its schema
   * (named after the preview) is the caller's to drop afterwards.
   */
  async purgeEndedPreview(previewId: string, before: Date): Promise<EndedPurgeOutcome> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const s = (
        await client.query<{ state: string; project_id: string | null; last_use: Date }>(
          `SELECT s.state, s.project_id, ${ENDED_LAST_USE} AS last_use FROM preview_sessions s
            WHERE s.id = $1 FOR UPDATE`,
          [previewId],
        )
      ).rows[0];
      const verdict: EndedPurgeOutcome | undefined =
        !s || s.project_id !== null
          ? { outcome: 'absent' }
          : s.state !== 'ended'
            ? { outcome: 'live' }
            : s.last_use >= before
              ? { outcome: 'used', lastUsedAt: s.last_use }
              : undefined;
      if (verdict) {
        await client.query('ROLLBACK');
        return verdict;
      }
      const counts = (
        await client.query<{ files: number; events: number }>(
          `SELECT (SELECT count(*)::int FROM project_files WHERE preview_id = $1) AS files,
                  (SELECT count(*)::int FROM preview_events WHERE preview_id = $1) AS events`,
          [previewId],
        )
      ).rows[0]!;
      // ON DELETE CASCADE: its files, events and sync marks.
      await client.query('DELETE FROM preview_sessions WHERE id = $1', [previewId]);
      await client.query('COMMIT');
      return { outcome: 'purged', previewId, ...counts };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  /** The ids among `ids` that are the database of an existing project (the schema janitor keeps them). */
  async databasesAmong(ids: string[]): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const { rows } = await this.pool.query<{ id: string }>(
      'SELECT database_id::text AS id FROM preview_projects WHERE database_id::text = ANY($1)',
      [ids],
    );
    return new Set(rows.map((r) => r.id));
  }
}
