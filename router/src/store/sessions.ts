import { createHash } from 'node:crypto';
import {
  CapacityError,
  ConflictError,
  InvalidInputError,
  LIVE_STATES,
  NotFoundError,
  type Placement,
  type ProjectFiles,
  type SessionState,
  statesLeadingTo,
  type TemplateName,
  type TierName,
} from '@preview/tiers';
import type pg from 'pg';
import type { Classification } from '../placement/classify.ts';

export interface PlacementReason {
  tier: TierName;
  outcome: 'chosen' | 'skipped' | 'failed';
  reason: string;
}

export interface Session {
  id: string;
  userId: string;
  template: TemplateName;
  state: SessionState;
  tier: TierName | null;
  placement: Placement | null;
  nodeId: string | null;
  classification: Classification | Record<string, never>;
  reasons: PlacementReason[];
  needsDatabase: boolean;
  /** The editor's app id this preview belongs to (`POST /v1/previews` `projectId`); null outside any project. */
  projectId: string | null;
  /**
   * The id db-isolation names this preview's schema after: the project's `database_id` for a preview
   * of a project (the schema belongs to the project and outlives the preview), null for a preview
   * with a schema of its own (named after its id). See {@link databaseIdOf}.
   */
  databaseId: string | null;
  lastSeq: number;
  error: string | null;
  lastEditAt: Date;
  lastViewAt: Date;
  createdAt: Date;
  updatedAt: Date;
  endedAt: Date | null;
}

interface Row {
  id: string;
  user_id: string;
  template: TemplateName;
  state: SessionState;
  tier: TierName | null;
  placement: Placement | null;
  node_id: string | null;
  classification: Classification;
  reasons: PlacementReason[];
  needs_database: boolean;
  project_id: string | null;
  database_id: string | null;
  last_seq: string;
  error: string | null;
  last_edit_at: Date;
  last_view_at: Date;
  created_at: Date;
  updated_at: Date;
  ended_at: Date | null;
}

const toSession = (r: Row): Session => ({
  id: r.id,
  userId: r.user_id,
  template: r.template,
  state: r.state,
  tier: r.tier,
  placement: r.placement,
  nodeId: r.node_id,
  classification: r.classification,
  reasons: r.reasons,
  needsDatabase: r.needs_database,
  projectId: r.project_id,
  databaseId: r.database_id,
  lastSeq: Number(r.last_seq),
  error: r.error,
  lastEditAt: r.last_edit_at,
  lastViewAt: r.last_view_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  endedAt: r.ended_at,
});

const COLS = `id, user_id, template, state, tier, placement, node_id, classification, reasons, needs_database,
  project_id, database_id, last_seq, error, last_edit_at, last_view_at, created_at, updated_at, ended_at`;

/**
 * A repeated Idempotency-Key must come with the body it was first used with (compared by SHA-256);
 * a session stored without a hash (created before the hash was kept) is not checked.
 *
 * @throws InvalidInputError `idempotency_mismatch` (HTTP 422)
 */
function assertSameBody(key: string | undefined, stored: string | null | undefined, now: string | undefined) {
  if (stored && now && stored !== now)
    throw new InvalidInputError(
      'idempotency_mismatch',
      `Idempotency-Key ${JSON.stringify(key)}: already used with a different body; use a new key for a new preview`,
    );
}

/**
 * Takes the per-user transaction lock that serialises a user's creates (live cap, idempotency, one
 * live preview per project) and retention purges of their projects, on every replica.
 */
export async function lockUser(client: pg.PoolClient, userId: string): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 7211))', [userId]);
}

/**
 * Makes the project row of (userId, projectId), or moves its `last_used_at` to now (an open is a
 * use), and returns its `database_id`.
 */
async function openProject(client: pg.PoolClient, userId: string, projectId: string): Promise<string> {
  const { rows } = await client.query<{ database_id: string }>(
    `INSERT INTO preview_projects (user_id, project_id) VALUES ($1, $2)
     ON CONFLICT (user_id, project_id) DO UPDATE SET last_used_at = now()
     RETURNING database_id`,
    [userId, projectId],
  );
  return rows[0]!.database_id;
}

/** Whether `e` is PostgreSQL's unique violation (23505) on `constraint`. */
function isUniqueViolation(e: unknown, constraint: string): boolean {
  const err = e as { code?: string; constraint?: string };
  return err?.code === '23505' && err.constraint === constraint;
}

/**
 * The id db-isolation names a session's schema and role after (`preview_<hex>` / `p_<hex>`): its
 * project's database for a preview of a project, else its own id.
 */
export function databaseIdOf(s: Pick<Session, 'id' | 'databaseId'>): string {
  return s.databaseId ?? s.id;
}

/** Extra columns a transition may set together with the state. */
export interface TransitionPatch {
  tier?: TierName | null;
  placement?: Placement | null;
  nodeId?: string | null;
  reasons?: PlacementReason[];
  error?: string | null;
}

const EVENTS_KEPT = 200;

/** One stored preview event (`preview_events`): its id (the SSE event id), kind, data and time. */
export interface StoredEvent {
  id: number;
  kind: string;
  data: Record<string, unknown>;
  at: Date;
}

/** A `preview_events` row as pg returns it (bigint ids as strings). */
type StoredEventRow = Omit<StoredEvent, 'id'> & { id: string };

/**
 * Sessions in Postgres, the source of truth. Every state change is a guarded update naming the
 * states it may leave (`statesLeadingTo`), so two replicas racing on one session cannot both win.
 *
 * @example
 * const s = await store.transition(id, 'ready'); // ConflictError if the session is e.g. `ended`
 */
export class SessionStore {
  readonly pool: pg.Pool;
  readonly #onChange: ((s: Session) => void) | undefined;
  /**
   * @param options.onChange called with the session after each insert and each state change this
   *   store committed (the router logs it with `previewId` and `nodeId`); must not throw.
   */
  constructor(pool: pg.Pool, options: { onChange?: (s: Session) => void } = {}) {
    this.pool = pool;
    this.#onChange = options.onChange;
  }

  /**
   * Inserts a `provisioning` session unless the user already has one with the same idempotency key,
   * or (with `projectId`) a live session of that project: then returns that one, `created: false`.
   * With `projectId` the project row is made (or its `last_used_at` moved) in the same transaction,
   * and a new session gets the project's `database_id`. Throws CapacityError `too_many_previews`
   * when the user has `maxLive` live sessions. A per-user advisory lock (the same key as
   * {@link lockUser}) makes the cap and the one-live-preview-per-project rule exact under
   * concurrency, across replicas; the unique indexes (`preview_sessions_idempotency`,
   * `preview_sessions_project_live`) back them up.
   */
  async create(input: {
    userId: string;
    template: TemplateName;
    classification: Classification;
    idempotencyKey?: string | undefined;
    /** SHA-256 (hex) of the request body the key came with; a reuse with another body is refused. */
    idempotencyBodyHash?: string | undefined;
    /** The editor's app id (validated by the route: `PROJECT_ID_PATTERN`). */
    projectId?: string | undefined;
    maxLive: number;
    /** Stored in the same transaction (one commit for the whole create). */
    files?: ProjectFiles;
  }): Promise<{ session: Session; created: boolean }> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await lockUser(client, input.userId);
      const databaseId = input.projectId ? await openProject(client, input.userId, input.projectId) : null;
      const prior = await this.#prior(client, input);
      if (prior) {
        await client.query('COMMIT');
        return { session: prior, created: false };
      }
      const { rows: cnt } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM preview_sessions WHERE user_id = $1 AND state = ANY($2)`,
        [input.userId, LIVE_STATES],
      );
      if ((cnt[0]?.n ?? 0) >= input.maxLive)
        throw new CapacityError(
          'too_many_previews',
          `at most ${input.maxLive} live previews per user; delete one first`,
        );
      const { rows } = await client.query<Row>(
        // Placement starts right away, so the session is born `provisioning` (`queued` is for deferred placement).
        `INSERT INTO preview_sessions (user_id, template, classification, needs_database, idempotency_key,
                                       idempotency_body_hash, project_id, database_id, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'provisioning')
         ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ${COLS}`,
        [
          input.userId,
          input.template,
          JSON.stringify(input.classification),
          input.classification.needsDatabase,
          input.idempotencyKey ?? null,
          input.idempotencyKey ? (input.idempotencyBodyHash ?? null) : null,
          input.projectId ?? null,
          databaseId,
        ],
      );
      let created = true;
      let row = rows[0] ? toSession(rows[0]) : undefined;
      if (!row) {
        created = false;
        row = await this.#prior(client, input);
      }
      if (created && input.files) await this.putFiles(row!.id, input.files, 0, client);
      await client.query('COMMIT');
      if (created) this.#onChange?.(row!);
      return { session: row!, created };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      // Only a writer that skipped the user lock can get here; the live session it made is the answer.
      if (isUniqueViolation(e, 'preview_sessions_project_live') && input.projectId) {
        const live = await this.liveInProject(input.userId, input.projectId);
        if (live) return { session: live, created: false };
      }
      throw e;
    } finally {
      client.release();
    }
  }

  /**
   * The session a create answers with instead of inserting: the one with the same idempotency key
   * (its body hash checked), else the project's live session.
   * @throws InvalidInputError `idempotency_mismatch`
   */
  async #prior(
    client: pg.PoolClient,
    input: {
      userId: string;
      idempotencyKey?: string | undefined;
      idempotencyBodyHash?: string | undefined;
      projectId?: string | undefined;
    },
  ): Promise<Session | undefined> {
    if (input.idempotencyKey) {
      const { rows } = await client.query<Row & { idempotency_body_hash: string | null }>(
        `SELECT ${COLS}, idempotency_body_hash FROM preview_sessions WHERE user_id = $1 AND idempotency_key = $2`,
        [input.userId, input.idempotencyKey],
      );
      if (rows[0]) {
        assertSameBody(input.idempotencyKey, rows[0].idempotency_body_hash, input.idempotencyBodyHash);
        return toSession(rows[0]);
      }
    }
    if (input.projectId) return await this.liveInProject(input.userId, input.projectId, client);
    return undefined;
  }

  /** How many sessions are live (not `ended` or `failed`), over all users. */
  async countLive(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM preview_sessions WHERE state NOT IN ('ended','failed')`,
    );
    return rows[0]?.n ?? 0;
  }

  /** Live sessions by tier (`none` before placement) and node name (`''` off the docker tier). */
  async livePlacements(): Promise<Array<{ tier: string; node: string; count: number }>> {
    const { rows } = await this.pool.query<{ tier: string; node: string; count: number }>(
      `SELECT coalesce(s.tier, 'none') AS tier, coalesce(n.name, '') AS node, count(*)::int AS count
         FROM preview_sessions s LEFT JOIN preview_nodes n ON n.id = s.node_id
        WHERE s.state NOT IN ('ended','failed') GROUP BY 1, 2`,
    );
    return rows;
  }

  /** The user's live session of project `projectId`, if any (at most one: `preview_sessions_project_live`). */
  async liveInProject(
    userId: string,
    projectId: string,
    db: pg.Pool | pg.PoolClient = this.pool,
  ): Promise<Session | undefined> {
    const { rows } = await db.query<Row>(
      `SELECT ${COLS} FROM preview_sessions WHERE user_id = $1 AND project_id = $2 AND state = ANY($3)`,
      [userId, projectId, LIVE_STATES],
    );
    return rows[0] ? toSession(rows[0]) : undefined;
  }

  /** The user's newest session of project `projectId` in any state (where its stored files are). */
  async latestInProject(userId: string, projectId: string): Promise<Session | undefined> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLS} FROM preview_sessions WHERE user_id = $1 AND project_id = $2
        ORDER BY created_at DESC, id DESC LIMIT 1`,
      [userId, projectId],
    );
    return rows[0] ? toSession(rows[0]) : undefined;
  }

  async get(id: string): Promise<Session | undefined> {
    const { rows } = await this.pool.query<Row>(`SELECT ${COLS} FROM preview_sessions WHERE id = $1`, [id]);
    return rows[0] ? toSession(rows[0]) : undefined;
  }

  /** The session if `userId` owns it; otherwise NotFoundError (another user's preview is not even acknowledged). */
  async getOwned(id: string, userId: string): Promise<Session> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLS} FROM preview_sessions WHERE id = $1 AND user_id = $2`,
      [id, userId],
    );
    if (!rows[0]) throw new NotFoundError('not_found', `preview ${id} not found`);
    return toSession(rows[0]);
  }

  async list(
    userId: string,
    options: { limit: number; includeEnded: boolean; before?: { createdAt: Date; id: string } | undefined },
  ): Promise<Session[]> {
    const params: unknown[] = [userId, options.limit];
    let where = 'user_id = $1';
    if (!options.includeEnded) {
      params.push(LIVE_STATES);
      where += ` AND state = ANY($${params.length})`;
    }
    if (options.before) {
      params.push(options.before.createdAt, options.before.id);
      where += ` AND (created_at, id) < ($${params.length - 1}, $${params.length})`;
    }
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLS} FROM preview_sessions WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $2`,
      params,
    );
    return rows.map(toSession);
  }

  /** Moves `id` to `to` if its current state may lead there; ConflictError otherwise. */
  async transition(
    id: string,
    to: SessionState,
    patch: TransitionPatch = {},
    /** Appended to `preview_events` by the same statement (one commit). */
    event?: { kind: string; data: Record<string, unknown> },
  ): Promise<Session> {
    const sets = ['state = $2', 'updated_at = now()'];
    const params: unknown[] = [id, to, statesLeadingTo(to)];
    const add = (col: string, v: unknown) => {
      params.push(v);
      sets.push(`${col} = $${params.length}`);
    };
    if (patch.tier !== undefined) add('tier', patch.tier);
    if (patch.placement !== undefined)
      add('placement', patch.placement ? JSON.stringify(patch.placement) : null);
    if (patch.nodeId !== undefined) add('node_id', patch.nodeId);
    if (patch.reasons !== undefined) add('reasons', JSON.stringify(patch.reasons));
    if (patch.error !== undefined) add('error', patch.error);
    if (to === 'ended') sets.push('ended_at = now()');
    let sql = `UPDATE preview_sessions SET ${sets.join(', ')} WHERE id = $1 AND state = ANY($3) RETURNING ${COLS}`;
    if (event) {
      params.push(event.kind, JSON.stringify(event.data));
      sql = `WITH u AS (${sql}), e AS (INSERT INTO preview_events (preview_id, kind, data)
        SELECT id, $${params.length - 1}, $${params.length}::jsonb FROM u) SELECT * FROM u`;
    }
    const { rows } = await this.pool.query<Row>(sql, params);
    if (rows[0]) {
      const s = toSession(rows[0]);
      this.#onChange?.(s);
      return s;
    }
    const current = await this.get(id);
    if (!current) throw new NotFoundError('not_found', `preview ${id} not found`);
    throw new ConflictError(
      'invalid_transition',
      `preview ${id} is ${current.state}; it cannot become ${to}`,
    );
  }

  /** Records user activity (`edit`: files pushed; `view`: a human page view). */
  async touch(id: string, kind: 'edit' | 'view'): Promise<void> {
    const col = kind === 'edit' ? 'last_edit_at' : 'last_view_at';
    await this.pool.query(`UPDATE preview_sessions SET ${col} = now() WHERE id = $1`, [id]);
  }

  /** Upserts files (latest content per path) and raises `last_seq`. */
  async putFiles(
    id: string,
    files: ProjectFiles,
    seq: number,
    db: pg.Pool | pg.PoolClient = this.pool,
  ): Promise<void> {
    const paths: string[] = [];
    const contents: Buffer[] = [];
    const hashes: string[] = [];
    const sizes: number[] = [];
    for (const [path, f] of Object.entries(files)) {
      const buf =
        typeof f === 'string'
          ? Buffer.from(f, 'utf8')
          : Buffer.from(f.content, f.encoding === 'base64' ? 'base64' : 'utf8');
      paths.push(path);
      contents.push(buf);
      hashes.push(createHash('sha256').update(buf).digest('hex'));
      sizes.push(buf.length);
    }
    if (paths.length === 0) return;
    await db.query(
      `INSERT INTO project_files (preview_id, path, content, content_hash, size, seq)
       SELECT $1, p, c, h, s, $6 FROM unnest($2::text[], $3::bytea[], $4::text[], $5::int[]) AS t(p, c, h, s)
       ON CONFLICT (preview_id, path) DO UPDATE
         SET content = EXCLUDED.content, content_hash = EXCLUDED.content_hash, size = EXCLUDED.size,
             seq = EXCLUDED.seq, updated_at = now()`,
      [id, paths, contents, hashes, sizes, seq],
    );
    if (seq > 0)
      await db.query('UPDATE preview_sessions SET last_seq = greatest(last_seq, $2) WHERE id = $1', [
        id,
        seq,
      ]);
  }

  async deleteFiles(id: string, paths: string[]): Promise<void> {
    if (paths.length)
      await this.pool.query('DELETE FROM project_files WHERE preview_id = $1 AND path = ANY($2)', [
        id,
        paths,
      ]);
  }

  /** The stored project (utf8 where it decodes cleanly, base64 otherwise). */
  async loadFiles(id: string): Promise<ProjectFiles> {
    const { rows } = await this.pool.query<{ path: string; content: Buffer }>(
      'SELECT path, content FROM project_files WHERE preview_id = $1 ORDER BY path',
      [id],
    );
    const out: ProjectFiles = {};
    for (const r of rows) {
      const text = r.content.toString('utf8');
      out[r.path] = Buffer.from(text, 'utf8').equals(r.content)
        ? text
        : { content: r.content.toString('base64'), encoding: 'base64' };
    }
    return out;
  }

  /**
   * Appends to the bounded per-preview event log; nothing when the preview is gone or has ended
   * (`ended`, stored with the transition, is a preview's last event: an SSE stream closes there, so
   * a later log line or status would be in the log and never sent). The event's id
   * is taken under the preview's row lock, as `transition`'s is (its UPDATE holds it): one
   * preview's events commit in id order, so an SSE stream that has read id n has every earlier
   * one, and a stream that ends at `ended` has missed none (ids come from one sequence that all
   * previews share; without the lock a lower id could commit after a higher one was read).
   */
  async appendEvent(id: string, kind: string, data: Record<string, unknown>): Promise<void> {
    const { rows } = await this.pool.query<{ id: string }>(
      `WITH s AS (SELECT id FROM preview_sessions WHERE id = $1 AND state <> 'ended' FOR NO KEY UPDATE)
       INSERT INTO preview_events (preview_id, kind, data) SELECT id, $2, $3 FROM s RETURNING id`,
      [id, kind, JSON.stringify(data)],
    );
    const newId = Number(rows[0]?.id ?? 0);
    // Trim occasionally rather than on every insert.
    if (newId % 50 === 0)
      await this.pool.query(
        `DELETE FROM preview_events WHERE preview_id = $1 AND id <= (
           SELECT id FROM preview_events WHERE preview_id = $1 ORDER BY id DESC OFFSET $2 LIMIT 1)`,
        [id, EVENTS_KEPT],
      );
  }

  async recentEvents(id: string, limit = 50): Promise<StoredEvent[]> {
    const { rows } = await this.pool.query<StoredEventRow>(
      'SELECT id, kind, data, at FROM preview_events WHERE preview_id = $1 ORDER BY id DESC LIMIT $2',
      [id, limit],
    );
    return rows.reverse().map((r) => ({ ...r, id: Number(r.id) }));
  }

  /**
   * Events of preview `id` with an id above `afterId`, oldest first, at most `limit` (what an SSE
   * stream sends after a `Last-Event-ID`, and its catch-up on every wake). Ids are `preview_events.id`
   * (one sequence for all previews: increasing, not contiguous).
   * @default limit 200 (the log keeps about as many per preview)
   */
  async eventsAfter(id: string, afterId: number, limit = 200): Promise<StoredEvent[]> {
    const { rows } = await this.pool.query<StoredEventRow>(
      'SELECT id, kind, data, at FROM preview_events WHERE preview_id = $1 AND id > $2 ORDER BY id LIMIT $3',
      [id, afterId, limit],
    );
    return rows.map((r) => ({ ...r, id: Number(r.id) }));
  }

  /** Live sessions on a node (reconcile). */
  async onNode(nodeId: string): Promise<Session[]> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLS} FROM preview_sessions WHERE node_id = $1 AND state = ANY($2)`,
      [nodeId, LIVE_STATES],
    );
    return rows.map(toSession);
  }

  /** Sessions idle since `before` in one of `states` (idle job). */
  async idle(states: SessionState[], before: Date, limit = 100): Promise<Session[]> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLS} FROM preview_sessions
       WHERE state = ANY($1) AND greatest(last_edit_at, last_view_at) < $2 LIMIT $3`,
      [states, before, limit],
    );
    return rows.map(toSession);
  }

  /** Sessions stuck in `state` since before `before` (a replica died mid-placement). */
  /**
   * How many times preview `id` went `migrating` in the last `withinMs`: its `state` events in
   * `preview_events` (each state change is published there once).
   */
  async recentMigrations(id: string, withinMs: number): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM preview_events
        WHERE preview_id = $1 AND kind = 'state' AND data->>'state' = 'migrating'
          AND at > now() - make_interval(secs => $2::float8 / 1000)`,
      [id, withinMs],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * A placement in flight says it is still alive: `updated_at` of a session being placed
   * (`provisioning` or `migrating`) moves to now. See PLACING_STALE_MS in jobs.ts.
   */
  async keepPlacing(id: string): Promise<void> {
    await this.pool.query(
      `UPDATE preview_sessions SET updated_at = now() WHERE id = $1 AND state IN ('provisioning', 'migrating')`,
      [id],
    );
  }

  /**
   * Takes over session `id` in `state` when no one touched it since `before` (its placing replica is
   * gone): moves `updated_at` to now in the same statement, so of concurrent callers one gets the
   * session, the others undefined.
   */
  async claimStale(id: string, state: SessionState, before: Date): Promise<Session | undefined> {
    const { rows } = await this.pool.query<Row>(
      `UPDATE preview_sessions SET updated_at = now() WHERE id = $1 AND state = $2 AND updated_at < $3 RETURNING ${COLS}`,
      [id, state, before],
    );
    return rows[0] ? toSession(rows[0]) : undefined;
  }

  async stuck(state: SessionState, before: Date, limit = 100): Promise<Session[]> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLS} FROM preview_sessions WHERE state = $1 AND updated_at < $2 LIMIT $3`,
      [state, before, limit],
    );
    return rows.map(toSession);
  }

  async liveWithNodes(): Promise<Array<{ id: string; nodeId: string }>> {
    const { rows } = await this.pool.query<{ id: string; node_id: string }>(
      `SELECT id, node_id FROM preview_sessions WHERE node_id IS NOT NULL AND state = ANY($1)`,
      [LIVE_STATES],
    );
    return rows.map((r) => ({ id: r.id, nodeId: r.node_id }));
  }

  /**
   * The ids among `ids` with a live session, on `tier` / `nodeId` when given: a session that moved to
   * another tier or node does not keep its old sandbox alive. A session not yet placed anywhere (null
   * tier or node) counts as live everywhere: it may be being placed there right now.
   */
  async liveAmong(ids: string[], on: { tier?: TierName; nodeId?: string } = {}): Promise<Set<string>> {
    if (!ids.length) return new Set();
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id::text FROM preview_sessions WHERE id::text = ANY($1) AND state = ANY($2)
         AND ($3::text IS NULL OR tier IS NULL OR tier = $3)
         AND ($4::text IS NULL OR node_id IS NULL OR node_id::text = $4)`,
      [ids, LIVE_STATES, on.tier ?? null, on.nodeId ?? null],
    );
    return new Set(rows.map((r) => r.id));
  }
}
