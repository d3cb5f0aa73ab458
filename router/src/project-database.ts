import { ConflictError, InvalidInputError, NotFoundError } from '@preview/tiers';
import type pg from 'pg';
import type { Logger } from 'pino';
import { checkDeployTarget, type HostLookup } from './deploy-target.ts';
import type { PreviewDatabases, PreviewService } from './previews.ts';
import { SEED_MAX_BYTES } from './schemas.ts';
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

/** The project's seed files, in the order they are looked for in its stored files. */
export const SEED_FILES = ['supabase/seed.sql', 'seed.sql'] as const;

/** The longest wait for the project's preview to be ready before its seed script runs, ms. */
const SEED_SCRIPT_READY_MS = 120_000;

/** What a seed answers: its wall time and what ran. */
export interface SeedOutcome {
  ms: number;
  /** `sql` (the request's SQL), a seed file's path, or `package.json scripts.seed`. */
  source: string;
  /** The seed script's output (its last 16 KiB), for `package.json scripts.seed`. */
  output?: string;
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
  readonly #previews: Pick<PreviewService, 'tier' | 'wake' | 'waitReady'> | undefined;

  constructor(o: {
    pool: pg.Pool;
    store: SessionStore;
    databases: PreviewDatabases | undefined;
    log: Logger;
    /** Internal hosts a deploy may reach anyway (`DEPLOY_TARGET_HOSTS`). @default [] */
    allowedTargetHosts?: readonly string[];
    /** Name resolution for the target check. @default dns.lookup */
    lookup?: HostLookup;
    /** The previews a seed script runs in (`seed` without SQL). */
    previews?: Pick<PreviewService, 'tier' | 'wake' | 'waitReady'>;
  }) {
    this.#previews = o.previews;
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
   * Seeds the project's database. With `sql`: runs it in the project's schema as its preview role
   * (db-isolation `seed`, one transaction). Without: runs the project's own seed, found in its stored
   * files (those of its newest preview): the first of {@link SEED_FILES} the same way, else
   * package.json `scripts.seed` inside the project's live preview's sandbox (`npm run seed` with the
   * preview's DATABASE_URL; a suspended preview is woken, one still starting is waited for).
   * @throws NotFoundError `not_found`, `no_database`, `no_seed` (no SQL given and the project has
   *   neither seed file nor `scripts.seed`); ConflictError `preview_not_live` (`scripts.seed` needs the
   *   project's preview running), `no_sandbox` (its preview runs in the browser); InvalidInputError
   *   `seed_failed` (PostgreSQL's message and position, or the script's exit and output),
   *   `seed_too_large` (a seed file over SEED_MAX_BYTES).
   */
  async seed(userId: string, projectId: string, input: { sql?: string | undefined }): Promise<SeedOutcome> {
    const { databaseId, databases } = await this.#database(userId, projectId);
    const runSql = async (sql: string, source: string): Promise<SeedOutcome> => {
      try {
        const r = await databases.seed(databaseId, sql);
        this.#log.info({ userId, projectId, source, ms: r.ms }, 'project database seeded');
        return { ms: r.ms, source };
      } catch (e) {
        if (e instanceof NotFoundError) throw noDatabase(projectId, e);
        throw e;
      }
    };
    if (input.sql !== undefined) return await runSql(input.sql, 'sql');
    const latest = await this.#store.latestInProject(userId, projectId);
    const files = latest ? await this.#store.loadFiles(latest.id) : {};
    const text = (path: string) => {
      const f = files[path];
      return typeof f === 'string' ? f : f?.encoding === 'utf8' ? f.content : undefined;
    };
    for (const path of SEED_FILES) {
      const sql = text(path);
      if (sql === undefined || !sql.trim()) continue;
      if (Buffer.byteLength(sql) > SEED_MAX_BYTES)
        throw new InvalidInputError(
          'seed_too_large',
          `${path} is ${Buffer.byteLength(sql)} bytes; a seed runs at most ${SEED_MAX_BYTES}`,
        );
      return await runSql(sql, path);
    }
    let scripts: Record<string, unknown> = {};
    try {
      scripts =
        (JSON.parse(text('package.json') ?? '{}') as { scripts?: Record<string, unknown> }).scripts ?? {};
    } catch {
      // not JSON: no script
    }
    if (typeof scripts['seed'] !== 'string')
      throw new NotFoundError(
        'no_seed',
        `project ${projectId}: no sql given, and its files have no ${SEED_FILES.join(' or ')} and package.json has no scripts.seed`,
      );
    return await this.#runSeedScript(userId, projectId);
  }

  /** `npm run seed` in the project's live preview (see {@link seed}). */
  async #runSeedScript(userId: string, projectId: string): Promise<SeedOutcome> {
    let s = await this.#store.liveInProject(userId, projectId);
    if (!s || !this.#previews)
      throw new ConflictError(
        'preview_not_live',
        `project ${projectId}: package.json scripts.seed runs in the project's preview, and it has none running; open the preview, then seed again`,
      );
    if (s.state === 'suspended') s = (await this.#previews.wake(s.id)) ?? s;
    if (s.state !== 'ready') s = await this.#previews.waitReady(s.id, SEED_SCRIPT_READY_MS);
    const tier = this.#previews.tier(s.tier);
    if (!tier?.runScript)
      throw new ConflictError(
        'no_sandbox',
        `project ${projectId}: its preview runs on the ${s.tier ?? 'no'} tier, which has no sandbox to run package.json scripts.seed in; send the SQL instead`,
      );
    const run = await tier.runScript(s.id, 'seed');
    this.#log.info(
      { userId, projectId, previewId: s.id, exitCode: run.exitCode, ms: run.ms },
      'project seed script ran',
    );
    if (run.exitCode !== 0)
      throw new InvalidInputError(
        'seed_failed',
        `package.json scripts.seed ${run.timedOut ? 'ran too long and was killed' : `exited with ${run.exitCode ?? run.signal}`}: ${run.output.slice(-2000)}`,
      );
    return { ms: run.ms, source: 'package.json scripts.seed', output: run.output };
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
