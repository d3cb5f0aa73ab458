import { ConflictError, NotFoundError } from '@preview/tiers';
import type pg from 'pg';
import type { Logger } from 'pino';
import { checkDeployTarget, type HostLookup } from './deploy-target.ts';
import type { PreviewDatabases } from './previews.ts';
import { lockUser, type SessionStore } from './store/sessions.ts';

/** What a deploy answers: db-isolation's report, and whether the preview schema was dropped. */
export interface ProjectDeployResult {
  schema: string;
  tables: Array<{ name: string; rows: number }>;
  sequences: Array<{ name: string; value: string | null }>;
  replaced: string[];
  /** The project's preview schema was dropped after the deploy (`dropPreviewSchema`). */
  previewSchemaDropped: boolean;
  /** Wall time of the copy, ms (the drop not included). */
  ms: number;
}

/** The validated body of `POST /v1/projects/:projectId/database/deploy`. */
export interface ProjectDeployInput {
  databaseUrl: string;
  schema: string;
  replace: boolean;
  dropPreviewSchema: boolean;
}

/**
 * A project's database (issue 16): copy it with its rows to another database (`deploy`), or run
 * SQL in it as the preview's role (`seed`). Only the project's owner reaches it: a project of
 * another user, or none, is a 404. The database is the project's db-isolation schema, named after
 * `preview_projects.database_id`.
 */
export class ProjectDatabaseService {
  readonly #pool: pg.Pool;
  readonly #store: SessionStore;
  readonly #databases: PreviewDatabases | undefined;
  readonly #log: Logger;
  readonly #allowedTargetHosts: readonly string[];
  readonly #lookup: HostLookup | undefined;

  constructor(o: {
    pool: pg.Pool;
    store: SessionStore;
    databases: PreviewDatabases | undefined;
    log: Logger;
    /** Internal hosts a deploy may reach anyway (`DEPLOY_TARGET_HOSTS`). @default [] */
    allowedTargetHosts?: readonly string[];
    /** Name resolution for the target check. @default dns.lookup */
    lookup?: HostLookup;
  }) {
    this.#pool = o.pool;
    this.#store = o.store;
    this.#databases = o.databases;
    this.#log = o.log;
    this.#allowedTargetHosts = o.allowedTargetHosts ?? [];
    this.#lookup = o.lookup;
  }

  /**
   * Copies the project's schema into `input.databaseUrl` (db-isolation `deploy`: one transaction,
   * counts and sequence values checked), then with `dropPreviewSchema` drops the project's schema,
   * under the user's create lock and only while the project has no live preview.
   * @throws NotFoundError `not_found` (no such project of this user), `no_database` (it has no schema)
   * @throws ConflictError `preview_live` (`dropPreviewSchema` with a live preview; checked first, and
   *   again before the drop), `target_conflict`; and db-isolation's target errors.
   * @throws ForbiddenError `target_forbidden` (the target is an internal address not allowed by
   *   name: see {@link checkDeployTarget}); InvalidInputError `invalid_target` (it does not resolve)
   */
  async deploy(userId: string, projectId: string, input: ProjectDeployInput): Promise<ProjectDeployResult> {
    const { databaseId, databases } = await this.#database(userId, projectId);
    // The checked address is the one connected to: the name is not resolved a second time.
    const address = await checkDeployTarget(input.databaseUrl, this.#allowedTargetHosts, this.#lookup);
    if (input.dropPreviewSchema) await this.#assertNoLivePreview(this.#pool, userId, projectId);
    let report: Awaited<ReturnType<PreviewDatabases['deploy']>>;
    try {
      report = await databases.deploy(databaseId, {
        databaseUrl: input.databaseUrl,
        schema: input.schema,
        replace: input.replace,
        ...(address ? { address } : {}),
      });
    } catch (e) {
      if (e instanceof NotFoundError) throw noDatabase(projectId, e);
      throw e;
    }
    this.#log.info(
      { userId, projectId, schema: report.schema, tables: report.tables.length },
      'project database deployed',
    );
    if (!input.dropPreviewSchema) return { ...report, previewSchemaDropped: false };
    const client = await this.#pool.connect();
    try {
      // Under the create lock no preview of the user starts (and so none takes the schema) meanwhile.
      await client.query('BEGIN');
      await lockUser(client, userId);
      await this.#assertNoLivePreview(client, userId, projectId);
      const dropped = await databases.drop(databaseId);
      await client.query('COMMIT');
      return { ...report, previewSchemaDropped: dropped };
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  /**
   * Runs `sql` in the project's schema as its preview role (db-isolation `seed`, one transaction).
   * @throws NotFoundError `not_found`, `no_database`; InvalidInputError `seed_failed` (PostgreSQL's
   *   message and position).
   */
  async seed(userId: string, projectId: string, sql: string): Promise<{ ms: number }> {
    const { databaseId, databases } = await this.#database(userId, projectId);
    try {
      return await databases.seed(databaseId, sql);
    } catch (e) {
      if (e instanceof NotFoundError) throw noDatabase(projectId, e);
      throw e;
    }
  }

  /** The caller's project's database id; 404 for a project that is not theirs or does not exist. */
  async #database(userId: string, projectId: string) {
    const { rows } = await this.#pool.query<{ database_id: string }>(
      'SELECT database_id::text FROM preview_projects WHERE user_id = $1 AND project_id = $2',
      [userId, projectId],
    );
    if (!rows[0]) throw new NotFoundError('not_found', `project ${projectId}: not found`);
    if (!this.#databases)
      throw new NotFoundError('no_database', `project ${projectId}: this deployment has no preview database`);
    return { databaseId: rows[0].database_id, databases: this.#databases };
  }

  async #assertNoLivePreview(db: pg.Pool | pg.PoolClient, userId: string, projectId: string) {
    const live = await this.#store.liveInProject(userId, projectId, db);
    if (live)
      throw new ConflictError(
        'preview_live',
        `dropPreviewSchema: project ${projectId} has a live preview (${live.id}) using the schema; delete it first or deploy without dropPreviewSchema`,
      );
  }
}

function noDatabase(projectId: string, cause: unknown): NotFoundError {
  return new NotFoundError(
    'no_database',
    `project ${projectId} has no database (no full-stack preview made one)`,
    {
      cause,
    },
  );
}
