import { pipeline } from 'node:stream/promises';
import { ConflictError, InvalidInputError, PreviewError, TierUnavailableError } from '@preview/tiers';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { from as copyFrom } from 'pg-copy-streams';
import type { DbIsolationLogger } from './context.ts';
import { type ExportSchemaOptions, openSnapshot, schemaParts } from './export.ts';
import { quoteIdent } from './names.ts';

/** What {@link deploySchema} did: the target as checked against the source, in the target's transaction. */
export interface DeployReport {
  /** The schema of the target database the objects went into. */
  schema: string;
  /** Every exported table with its row count (the same in source and target). */
  tables: Array<{ name: string; rows: number }>;
  /**
   * Every sequence with its current value (`last_value`; null for a sequence never used, whose next
   * value is its start), the same in source and target.
   */
  sequences: Array<{ name: string; value: string | null }>;
  /** Objects of the same names dropped first (`replace: true`): `table orders`, `type status`, ... */
  replaced: string[];
  /** Wall time of the whole deploy, in milliseconds. */
  ms: number;
}

/** Options of {@link deploySchema}. */
export interface DeploySchemaOptions {
  /** A pool on the source database (the router's admin pool). */
  admin: pg.Pool;
  /** The source schema (`preview_<hex>`). */
  schema: string;
  /** When the admin is not a superuser: the role to read the source as (the admin is a member). */
  role: string | undefined;
  /** A connected client on the target database. It is left connected; end it afterwards. */
  target: pg.ClientBase;
  /** The target schema (validated by the caller; created when missing). */
  targetSchema: string;
  /**
   * Drop target objects that have the names of exported tables, views, sequences and types first
   * (in the same transaction, `RESTRICT`: anything else depending on them fails the deploy).
   * @default false: such objects make the deploy fail with `ConflictError` `target_conflict`.
   */
  replace?: boolean;
  log: DbIsolationLogger;
}

/** Longest `databaseUrl` accepted, characters. */
export const MAX_DATABASE_URL_LENGTH = 2048;

/**
 * Whether `value` is a PostgreSQL connection URL (a deploy's target, the preview database's
 * address): `postgres://` or `postgresql://`, a host, a database name, at most
 * {@link MAX_DATABASE_URL_LENGTH} characters.
 */
export function isTargetDatabaseUrl(value: unknown): value is string {
  if (typeof value !== 'string' || value.length > MAX_DATABASE_URL_LENGTH) return false;
  try {
    const u = new URL(value);
    return (
      (u.protocol === 'postgres:' || u.protocol === 'postgresql:') &&
      u.hostname !== '' &&
      u.pathname.length > 1
    );
  } catch {
    return false;
  }
}

/**
 * A connected client on the target of a deploy. Never echoes the URL (it holds a password).
 * @param options.address the IP address to connect to instead of resolving the URL's host again: the
 *   address the caller checked (no DNS rebinding between the check and the connection). TLS still
 *   verifies the certificate against the URL's host name (SNI and identity: `ssl.servername`).
 * @throws InvalidInputError `invalid_database_url` for a URL that is not {@link isTargetDatabaseUrl};
 *   `target_refused` when the server refuses the login (wrong password, no such role or database).
 * @throws TierUnavailableError `target_unreachable` (tier `database`) when no connection is made in 10 s.
 */
export async function connectTarget(
  databaseUrl: unknown,
  options: { address?: string } = {},
): Promise<pg.Client> {
  if (!isTargetDatabaseUrl(databaseUrl))
    throw new InvalidInputError(
      'invalid_database_url',
      `databaseUrl: must be a postgres:// or postgresql:// URL with a host and a database name, at most ${MAX_DATABASE_URL_LENGTH} characters`,
    );
  const client = new pg.Client({ ...pinned(databaseUrl, options.address), connectionTimeoutMillis: 10_000 });
  // A target that goes away mid-deploy fails the query in progress; the event itself is not fatal.
  client.on('error', () => {});
  try {
    await client.connect();
    return client;
  } catch (e) {
    await client.end().catch(() => {});
    const err = e as { code?: string; message?: string };
    if (err.code && /^(28|3D)/.test(err.code))
      throw new InvalidInputError(
        'target_refused',
        `databaseUrl: the target refused the login: ${err.message}`,
        {
          cause: e,
        },
      );
    throw new TierUnavailableError(
      'target_unreachable',
      `databaseUrl: could not reach the target: ${err.message}`,
      {
        tier: 'database',
        cause: e,
      },
    );
  }
}

/**
 * `pg` settings of a target URL (parsed as `pg` parses it), with the host replaced by `address` when
 * given; then a TLS connection names the URL's host (`servername`), as it would have unpinned.
 */
function pinned(databaseUrl: string, address: string | undefined): pg.ClientConfig {
  if (!address) return { connectionString: databaseUrl };
  const config = parseIntoClientConfig(databaseUrl);
  const name = config.host;
  config.host = address;
  if (config.ssl && name) config.ssl = { ...(config.ssl === true ? {} : config.ssl), servername: name };
  return config;
}

/** A relation or type of the source, by name, as the target may already have it. */
interface SourceObject {
  name: string;
  kind: 'table' | 'view' | 'materialized view' | 'sequence' | 'foreign table' | 'type' | 'domain';
}

const RELKINDS: Record<string, SourceObject['kind']> = {
  r: 'table',
  p: 'table',
  v: 'view',
  m: 'materialized view',
  S: 'sequence',
  f: 'foreign table',
};
/** Drop order: what can depend on the others first. */
const DROP_ORDER: SourceObject['kind'][] = [
  'materialized view',
  'view',
  'foreign table',
  'table',
  'sequence',
  'domain',
  'type',
];

/**
 * Copies a preview's schema (`o.schema` on `o.admin`) into `o.targetSchema` of another database
 * (`o.target`): the export of `exportSchema` (types, functions, sequences with their values, tables,
 * rows, constraints, indexes, foreign keys, views, triggers, policies, comments), read in one
 * REPEATABLE READ snapshot and applied statement by statement (rows through COPY) in ONE target
 * transaction. Before committing it checks, in that transaction, each table's row count and each
 * sequence's value against the snapshot. On any failure the target transaction is rolled back, so
 * the target is unchanged.
 *
 * @throws NotFoundError `not_found` when the source schema does not exist.
 * @throws ConflictError `target_conflict` when the target schema already has tables, views,
 *   sequences or types of the exported names and `replace` is not set (the message names them).
 * @throws PreviewError `deploy_failed` naming the statement or table that failed and PostgreSQL's
 *   message, or the table / sequence whose check did not match.
 */
export async function deploySchema(o: DeploySchemaOptions): Promise<DeployReport> {
  const started = performance.now();
  const { client: source, nsOid } = await openSnapshot(o);
  let sourceError: Error | undefined;
  let inTarget = false;
  try {
    const expected = await sourceFacts(source, nsOid);
    await o.target.query('BEGIN');
    inTarget = true;
    const replaced = await clearConflicts(o, expected.objects);
    const exportOptions: ExportSchemaOptions = { ...o, targetSchema: o.targetSchema };
    for await (const part of schemaParts(source, nsOid, exportOptions)) {
      if (typeof part === 'string') {
        await step(`statement ${firstLine(part)}`, () => o.target.query(part));
      } else {
        await step(`rows of table ${part.table}`, () =>
          pipeline(part.rows, o.target.query(copyFrom(`COPY ${part.table} (${part.columns}) FROM STDIN`))),
        );
      }
    }
    const report = await verify(o, expected);
    await step('commit', () => o.target.query('COMMIT'));
    inTarget = false;
    await source.query('COMMIT');
    o.log.info(
      { schema: o.schema, targetSchema: o.targetSchema, tables: report.tables.length },
      'schema deployed',
    );
    return { ...report, replaced, ms: Math.round(performance.now() - started) };
  } catch (e) {
    sourceError = e as Error;
    if (inTarget) await o.target.query('ROLLBACK').catch(() => {});
    o.log.warn({ schema: o.schema, err: sourceError.message }, 'schema deploy failed');
    throw e;
  } finally {
    // A failed deploy may leave the source mid-COPY: discard that connection.
    source.release(sourceError);
  }
}

/** What the source holds, read in the export's snapshot. */
async function sourceFacts(source: pg.PoolClient, nsOid: number) {
  const rels = await source.query<{ name: string; kind: string; partition: boolean }>(
    `SELECT c.relname AS name, c.relkind AS kind, c.relispartition AS partition FROM pg_class c
      WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') ORDER BY c.relname`,
    [nsOid],
  );
  const types = await source.query<{ name: string; kind: string }>(
    `SELECT t.typname AS name, t.typtype AS kind FROM pg_type t LEFT JOIN pg_class r ON r.oid = t.typrelid
      WHERE t.typnamespace = $1 AND t.typtype IN ('e', 'd', 'c', 'r') AND (t.typtype <> 'c' OR r.relkind = 'c')
      ORDER BY t.typname`,
    [nsOid],
  );
  // What the export writes rows for: plain tables (partitioned ones are not exported).
  const tables: Array<{ name: string; rows: number }> = [];
  for (const r of rels.rows) {
    if (r.kind !== 'r' || r.partition) continue;
    const n = await source.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${quoteIdent(r.name)}`);
    tables.push({ name: r.name, rows: Number(n.rows[0]!.n) });
  }
  const sequences = await source.query<{ name: string; value: string | null }>(
    `SELECT c.relname AS name, s.last_value::text AS value FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
      WHERE c.relnamespace = $1 AND c.relkind = 'S' ORDER BY c.relname`,
    [nsOid],
  );
  const objects: SourceObject[] = [
    ...rels.rows.map((r) => ({ name: r.name, kind: RELKINDS[r.kind]! })),
    ...types.rows.map((t) => ({
      name: t.name,
      kind: t.kind === 'd' ? ('domain' as const) : ('type' as const),
    })),
  ];
  return { tables, sequences: sequences.rows, objects };
}

/**
 * Finds target objects with the names of source objects (relations and types share the name space
 * of a schema). Without `replace` any is a `target_conflict`; with it they are dropped, in
 * {@link DROP_ORDER}, each kind in one `DROP ... RESTRICT`. Returns what was dropped.
 */
async function clearConflicts(o: DeploySchemaOptions, objects: SourceObject[]): Promise<string[]> {
  const names = [...new Set(objects.map((x) => x.name))];
  const found = await o.target.query<{ name: string; kind: string }>(
    `SELECT c.relname AS name, c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
     UNION ALL
     SELECT t.typname, CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END FROM pg_type t
       JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_class r ON r.oid = t.typrelid
      WHERE n.nspname = $1 AND t.typname = ANY($2) AND t.typtype IN ('e', 'd', 'c', 'r', 'b')
        AND (t.typtype <> 'c' OR r.relkind = 'c')
     ORDER BY 1`,
    [o.targetSchema, names],
  );
  const conflicts = found.rows.map((r) => ({
    name: r.name,
    kind: RELKINDS[r.kind] ?? (r.kind as SourceObject['kind']),
  }));
  if (!conflicts.length) return [];
  if (!o.replace) {
    const tables = conflicts.filter((c) => c.kind === 'table').map((c) => c.name);
    const others = conflicts.filter((c) => c.kind !== 'table').map((c) => `${c.kind} ${c.name}`);
    throw new ConflictError(
      'target_conflict',
      `databaseUrl: schema ${o.targetSchema} of the target already has ${[
        tables.length ? `tables ${tables.join(', ')}` : '',
        others.length ? others.join(', ') : '',
      ]
        .filter(Boolean)
        .join(' and ')}; send replace: true to drop and replace them`,
    );
  }
  const replaced: string[] = [];
  for (const kind of DROP_ORDER) {
    const of = conflicts.filter((c) => c.kind === kind).map((c) => c.name);
    if (!of.length) continue;
    const list = of.map((n) => `${quoteIdent(o.targetSchema)}.${quoteIdent(n)}`).join(', ');
    await step(`dropping ${kind} ${of.join(', ')} (replace)`, () =>
      o.target.query(`DROP ${kind.toUpperCase()} IF EXISTS ${list} RESTRICT`),
    );
    replaced.push(...of.map((n) => `${kind} ${n}`));
  }
  return replaced;
}

/** Row counts and sequence values of the target, checked against the source's. */
async function verify(
  o: DeploySchemaOptions,
  expected: Awaited<ReturnType<typeof sourceFacts>>,
): Promise<Omit<DeployReport, 'ms' | 'replaced'>> {
  const ts = quoteIdent(o.targetSchema);
  for (const t of expected.tables) {
    const r = await step(`counting rows of table ${t.name}`, () =>
      o.target.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${ts}.${quoteIdent(t.name)}`),
    );
    const got = Number(r.rows[0]!.n);
    if (got !== t.rows)
      throw new PreviewError(
        'deploy_failed',
        `deploy check: table ${t.name} has ${got} rows in the target, ${t.rows} in the preview`,
      );
  }
  const seqs = await o.target.query<{ name: string; value: string | null }>(
    'SELECT sequencename AS name, last_value::text AS value FROM pg_sequences WHERE schemaname = $1',
    [o.targetSchema],
  );
  const got = new Map(seqs.rows.map((s) => [s.name, s.value]));
  for (const s of expected.sequences) {
    if (!got.has(s.name) || got.get(s.name) !== s.value)
      throw new PreviewError(
        'deploy_failed',
        `deploy check: sequence ${s.name} is at ${got.get(s.name) ?? 'missing'} in the target, ${s.value ?? 'unused'} in the preview`,
      );
  }
  return { schema: o.targetSchema, tables: expected.tables, sequences: expected.sequences };
}

/** Runs one deploy step; a failure becomes `deploy_failed` naming the step and PostgreSQL's message. */
async function step<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof PreviewError) throw e;
    const pgErr = e as { message?: string; detail?: string; code?: string };
    const detail = pgErr.detail ? ` (${pgErr.detail})` : '';
    throw new PreviewError(
      'deploy_failed',
      `deploy failed at ${what}: ${pgErr.message ?? String(e)}${detail}`,
      {
        cause: e,
      },
    );
  }
}

/** The first line of SQL text that is not a comment or blank, shortened to 120 characters. */
function firstLine(sql: string): string {
  const line = sql.split('\n').find((l) => l.trim() !== '' && !l.trim().startsWith('--')) ?? sql.trim();
  const s = line.trim();
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}
