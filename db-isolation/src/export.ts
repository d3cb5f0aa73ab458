import { Readable } from 'node:stream';
import { NotFoundError } from '@preview/tiers';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { DbIsolationLogger } from './db-isolation.ts';
import { quoteIdent, quoteLiteral } from './names.ts';

export interface ExportSchemaOptions {
  admin: pg.Pool;
  /** The source schema (a `preview_<hex>` name). */
  schema: string;
  /** When the admin is not a superuser: the role to read as (the admin is a member of it). */
  role: string | undefined;
  /** The schema the SQL creates its objects in. */
  targetSchema: string;
  log: DbIsolationLogger;
}

type Oid = number;

interface TypeRow {
  oid: Oid;
  name: string;
  kind: 'e' | 'd' | 'c' | 'r' | 'm';
  labels: string[] | null;
  base: string | null;
  notnull: boolean;
  default: string | null;
  checks: string[] | null;
  collation: string | null;
  attrs: Array<{ name: string; type: string }> | null;
  deps: Oid[];
}

interface ColumnRow {
  rel: Oid;
  name: string;
  type: string;
  notnull: boolean;
  identity: '' | 'a' | 'd';
  generated: '' | 's';
  expr: string | null;
  collation: string | null;
}

interface SequenceRow {
  oid: Oid;
  name: string;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
  last: string | null;
  ownerRel: string | null;
  ownerCol: string | null;
  identity: boolean;
}

/**
 * One piece of an export, in load order: SQL text (one or more complete statements, comments
 * included), or the rows of one table as PostgreSQL COPY text (`rows`, read from the source while
 * the consumer reads them; consume each before asking for the next part).
 */
export type ExportPart =
  | string
  | {
      /** The table, quoted, unqualified (it lands in the target schema through `search_path`). */
      table: string;
      /** The quoted column list, `"a", "b"` (stored generated columns are left out). */
      columns: string;
      rows: AsyncIterable<Buffer>;
    };

/**
 * A connection holding a REPEATABLE READ READ ONLY transaction on the source (as `role` when
 * given), with `search_path` = the source schema, and the schema's oid. Throws `NotFoundError`
 * (`not_found`) when the schema does not exist; the connection is then released.
 */
export async function openSnapshot(
  o: Pick<ExportSchemaOptions, 'admin' | 'schema' | 'role'>,
): Promise<{ client: pg.PoolClient; nsOid: number }> {
  const client = await o.admin.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    if (o.role) await client.query(`SET LOCAL ROLE ${o.role}`);
    const ns = await client.query<{ oid: Oid }>('SELECT oid FROM pg_namespace WHERE nspname = $1', [
      o.schema,
    ]);
    if (!ns.rows[0]) throw new NotFoundError('not_found', `previewId: no database schema for this preview`);
    // pg_get_*def() print names visible on search_path unqualified: exactly the source schema's objects.
    await client.query(`SET LOCAL search_path = ${quoteIdent(o.schema)}`);
    return { client, nsOid: ns.rows[0].oid };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
    throw e;
  }
}

/**
 * Streams SQL that rebuilds `schema` (types, functions, sequences with their values, tables with
 * identity and generated columns, rows via COPY, constraints, indexes, views, triggers, comments)
 * inside `targetSchema` of an empty database. Everything is read in one REPEATABLE READ snapshot.
 * Object names are written unqualified under `SET search_path = <targetSchema>`, which is how the
 * schema is renamed; no role names and no GRANTs are written.
 */
export async function exportSchema(o: ExportSchemaOptions): Promise<Readable> {
  const { client, nsOid } = await openSnapshot(o);
  async function* generate(): AsyncGenerator<string | Buffer> {
    let outcome: Error | 'done' = new Error('export abandoned by its consumer');
    try {
      for await (const part of schemaParts(client, nsOid, o)) {
        if (typeof part === 'string') {
          yield part;
          continue;
        }
        yield `\nCOPY ${part.table} (${part.columns}) FROM stdin;\n`;
        yield* part.rows;
        yield '\\.\n';
      }
      await client.query('COMMIT');
      outcome = 'done';
    } catch (e) {
      outcome = e as Error;
      o.log.warn({ schema: o.schema, err: outcome.message }, 'schema export failed');
      throw e;
    } finally {
      // Failed or abandoned (the consumer went away): the connection may be mid-COPY, so discard it.
      client.release(outcome === 'done' ? undefined : outcome);
    }
  }
  return Readable.from(generate(), { objectMode: false });
}

/**
 * The export of the schema with oid `nsOid` as {@link ExportPart}s, read through `client` (a
 * connection from {@link openSnapshot}): what `exportSchema` writes as SQL text and
 * `deploySchema` applies to a target connection.
 */
export async function* schemaParts(
  client: pg.PoolClient,
  nsOid: number,
  o: ExportSchemaOptions,
): AsyncGenerator<ExportPart> {
  const q: Query = async <T extends pg.QueryResultRow>(sql: string): Promise<T[]> =>
    (await client.query<T>(sql, [nsOid])).rows;
  const target = quoteIdent(o.targetSchema);

  yield `-- Export of a preview database schema, generated ${new Date().toISOString()}.
-- Load into an empty database: psql -v ON_ERROR_STOP=1 -X -1 -f this.sql "$DATABASE_URL"
SET statement_timeout = 0;
SET lock_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SET check_function_bodies = false;
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS ${target};
SET search_path = ${target};

`;

  yield* exportTypes(q, o);
  yield* exportFunctions(q, o);
  const { tables, columns, constraints } = yield* exportTables(client, q, o);
  const views = yield* exportIndexesAndViews(q, constraints);
  yield* exportTriggersAndPolicies(q);
  yield* exportComments(tables, views, columns);
  yield '\n-- end of export\n';
}

/** Runs a catalog query with the source schema's oid as `$1`. */
type Query = <T extends pg.QueryResultRow>(sql: string) => Promise<T[]>;
type TableRow = { oid: Oid; name: string; unlogged: boolean; partitioned: boolean; comment: string | null };
type ConstraintRow = { rel: Oid; table: string; name: string; type: string; def: string };
type CommentedColumn = ColumnRow & { comment: string | null };
type ViewRow = {
  oid: Oid;
  name: string;
  kind: 'v' | 'm';
  def: string;
  options: string[] | null;
  populated: boolean;
  comment: string | null;
  deps: Oid[];
};

/** Enums, domains and composite types, in dependency order. */
async function* exportTypes(q: Query, o: ExportSchemaOptions): AsyncGenerator<string> {
  // Types: enums, domains, composites, in dependency order. Range types are rare in app schemas.
  const types = await q<TypeRow>(`
    SELECT t.oid::int AS oid, t.typname AS name, coalesce(r.relkind, t.typtype) AS kind,
      (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
      CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base,
      t.typnotnull AS notnull, pg_get_expr(t.typdefaultbin, 0) AS default,
      (SELECT array_agg(format('CONSTRAINT %I %s', c.conname, pg_get_constraintdef(c.oid)) ORDER BY c.conname)
         FROM pg_constraint c WHERE c.contypid = t.oid) AS checks,
      CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> bt.typcollation
        THEN (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co
                JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation) END AS collation,
      (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod)) ORDER BY a.attnum)
         FROM pg_attribute a WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS attrs,
      ARRAY(SELECT DISTINCT coalesce(nullif(dt.typelem, 0), dt.oid)::int FROM pg_type dt
             WHERE dt.oid = t.typbasetype
                OR dt.oid IN (SELECT a.atttypid FROM pg_attribute a WHERE t.typtype = 'c' AND a.attrelid = t.typrelid
                              AND a.attnum > 0 AND NOT a.attisdropped)) AS deps
    FROM pg_type t
    LEFT JOIN pg_class r ON r.oid = t.typrelid
    LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
    WHERE t.typnamespace = $1 AND t.typtype IN ('e', 'd', 'c', 'r') AND (t.typtype <> 'c' OR r.relkind = 'c')
    ORDER BY t.typname`);
  for (const t of topoSort(
    types,
    (t) => t.oid,
    (t) => t.deps,
  )) {
    const name = quoteIdent(t.name);
    if (t.kind === 'e') {
      yield `CREATE TYPE ${name} AS ENUM (${(t.labels ?? []).map(quoteLiteral).join(', ')});\n`;
    } else if (t.kind === 'd') {
      let s = `CREATE DOMAIN ${name} AS ${t.base}`;
      if (t.collation) s += ` COLLATE ${t.collation}`;
      if (t.default !== null) s += ` DEFAULT ${t.default}`;
      if (t.notnull) s += ' NOT NULL';
      for (const c of t.checks ?? []) s += ` ${c}`;
      yield `${s};\n`;
    } else if (t.kind === 'c') {
      const attrs = (t.attrs ?? []).map((a) => `${quoteIdent(a.name)} ${a.type}`).join(', ');
      yield `CREATE TYPE ${name} AS (${attrs});\n`;
    } else {
      o.log.warn({ schema: o.schema, type: t.name }, 'export: range types are not exported');
      yield `-- not exported: range type ${name}\n`;
    }
  }
}

/** Functions and procedures. */
async function* exportFunctions(q: Query, o: ExportSchemaOptions): AsyncGenerator<string> {
  // Functions and procedures (bodies are not checked at load time, so they may name later objects).
  const functions = await q<{ def: string }>(`
    SELECT pg_get_functiondef(p.oid) AS def FROM pg_proc p
     WHERE p.pronamespace = $1 AND p.prokind IN ('f', 'p')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
     ORDER BY p.proname, p.oid`);
  const srcPrefix = `${quoteIdent(o.schema)}.`;
  const bare = `${o.schema}.`;
  for (const f of functions) {
    // pg_get_functiondef always qualifies the function's own name: drop that qualifier.
    const nl = f.def.indexOf('\n');
    const head = f.def.slice(0, nl).replace(` ${srcPrefix}`, ' ').replace(` ${bare}`, ' ');
    yield `${head}${f.def.slice(nl).trimEnd()};\n`;
  }
}

/**
 * Sequences, tables (with identity and generated columns and CHECK constraints), their rows via COPY,
 * sequence values, and primary key, unique and exclusion constraints. Returns what later parts need.
 */
async function* exportTables(
  client: pg.PoolClient,
  q: Query,
  o: ExportSchemaOptions,
): AsyncGenerator<
  ExportPart,
  { tables: TableRow[]; columns: CommentedColumn[]; constraints: ConstraintRow[] }
> {
  const sequences = await q<SequenceRow>(`
    SELECT c.oid::int AS oid, c.relname AS name, format_type(s.seqtypid, NULL) AS type,
      s.seqstart::text AS start, s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max,
      s.seqcache::text AS cache, s.seqcycle AS cycle, ps.last_value::text AS last,
      oc.relname AS "ownerRel", oa.attname AS "ownerCol", coalesce(d.deptype = 'i', false) AS identity
    FROM pg_class c
    JOIN pg_sequence s ON s.seqrelid = c.oid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_sequences ps ON ps.schemaname = n.nspname AND ps.sequencename = c.relname
    LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
    LEFT JOIN pg_class oc ON oc.oid = d.refobjid
    LEFT JOIN pg_attribute oa ON oa.attrelid = d.refobjid AND oa.attnum = d.refobjsubid
    WHERE c.relnamespace = $1 AND c.relkind = 'S'
    ORDER BY c.relname`);
  const seqOptions = (s: SequenceRow) =>
    `START WITH ${s.start} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'}`;
  const identitySeq = new Map<string, SequenceRow>();
  for (const s of sequences) {
    if (s.identity) identitySeq.set(`${quoteIdent(s.ownerRel ?? '')}.${quoteIdent(s.ownerCol ?? '')}`, s);
    else yield `CREATE SEQUENCE ${quoteIdent(s.name)} AS ${s.type} ${seqOptions(s)};\n`;
  }

  const tables = await q<{
    oid: Oid;
    name: string;
    unlogged: boolean;
    partitioned: boolean;
    comment: string | null;
  }>(`
    SELECT c.oid::int AS oid, c.relname AS name, c.relpersistence = 'u' AS unlogged,
      c.relkind = 'p' OR c.relispartition AS partitioned, obj_description(c.oid, 'pg_class') AS comment
    FROM pg_class c WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname`);
  const columns = await q<ColumnRow & { comment: string | null }>(`
    SELECT a.attrelid::int AS rel, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
      a.attnotnull AS notnull, a.attidentity AS identity, a.attgenerated AS generated,
      pg_get_expr(d.adbin, d.adrelid) AS expr, col_description(a.attrelid, a.attnum) AS comment,
      CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
        THEN (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co
                JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END AS collation
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attrelid, a.attnum`);
  const constraints = await q<{ rel: Oid; table: string; name: string; type: string; def: string }>(`
    SELECT con.conrelid::int AS rel, quote_ident(c.relname) AS table, quote_ident(con.conname) AS name,
      con.contype AS type, pg_get_constraintdef(con.oid) AS def
    FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
    WHERE c.relnamespace = $1 AND c.relkind = 'r' AND con.conislocal AND con.contype IN ('c', 'p', 'u', 'x', 'f')
    ORDER BY c.relname, con.conname`);
  const colsOf = new Map<Oid, Array<ColumnRow & { comment: string | null }>>();
  for (const c of columns) {
    const list = colsOf.get(c.rel) ?? [];
    list.push(c);
    colsOf.set(c.rel, list);
  }

  for (const t of tables) {
    if (t.partitioned) {
      o.log.warn({ schema: o.schema, table: t.name }, 'export: partitioned tables are not exported');
      yield `-- not exported: partitioned table ${quoteIdent(t.name)}\n`;
      continue;
    }
    const tname = quoteIdent(t.name);
    const lines: string[] = [];
    for (const c of colsOf.get(t.oid) ?? []) {
      let s = `  ${quoteIdent(c.name)} ${c.type}`;
      if (c.collation) s += ` COLLATE ${c.collation}`;
      if (c.generated === 's') s += ` GENERATED ALWAYS AS (${c.expr}) STORED`;
      else if (c.identity) {
        const seq = identitySeq.get(`${quoteIdent(t.name)}.${quoteIdent(c.name)}`);
        const opts = seq ? ` (SEQUENCE NAME ${quoteIdent(seq.name)} ${seqOptions(seq)})` : '';
        s += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${opts}`;
      } else if (c.expr !== null) s += ` DEFAULT ${c.expr}`;
      if (c.notnull) s += ' NOT NULL';
      lines.push(s);
    }
    for (const con of constraints) {
      if (con.rel === t.oid && con.type === 'c' && !con.def.endsWith('NOT VALID'))
        lines.push(`  CONSTRAINT ${con.name} ${con.def}`);
    }
    yield `\nCREATE ${t.unlogged ? 'UNLOGGED ' : ''}TABLE ${tname} (\n${lines.join(',\n')}\n);\n`;
  }
  for (const s of sequences) {
    if (!s.identity && s.ownerRel && s.ownerCol)
      yield `ALTER SEQUENCE ${quoteIdent(s.name)} OWNED BY ${quoteIdent(s.ownerRel)}.${quoteIdent(s.ownerCol)};\n`;
  }

  // Rows, before indexes and constraints (faster, and foreign-key cycles load in any order).
  for (const t of tables) {
    if (t.partitioned) continue;
    const cols = (colsOf.get(t.oid) ?? []).filter((c) => c.generated !== 's').map((c) => quoteIdent(c.name));
    if (cols.length === 0) continue;
    const list = cols.join(', ');
    const rows = client.query(
      copyTo(`COPY ${quoteIdent(o.schema)}.${quoteIdent(t.name)} (${list}) TO STDOUT`),
    );
    yield { table: quoteIdent(t.name), columns: list, rows };
  }

  yield '\n';
  for (const s of sequences) {
    const called = s.last !== null;
    yield `SELECT pg_catalog.setval(${quoteLiteral(quoteIdent(s.name))}, ${called ? s.last : s.start}, ${called});\n`;
  }

  for (const con of constraints) {
    if (
      con.type === 'p' ||
      con.type === 'u' ||
      con.type === 'x' ||
      (con.type === 'c' && con.def.endsWith('NOT VALID'))
    )
      yield `ALTER TABLE ONLY ${con.table} ADD CONSTRAINT ${con.name} ${con.def};\n`;
  }

  return { tables, columns, constraints };
}

/** Indexes, clustering, foreign keys, then views and materialized views (each after what it reads). */
async function* exportIndexesAndViews(
  q: Query,
  constraints: ConstraintRow[],
): AsyncGenerator<string, ViewRow[]> {
  const indexes = await q<{
    def: string;
    qualified: string;
    table: string;
    name: string;
    clustered: boolean;
    matview: boolean;
  }>(`
    SELECT pg_get_indexdef(i.indexrelid) AS def, format('%I.%I', n.nspname, tc.relname) AS qualified,
      quote_ident(tc.relname) AS table, quote_ident(ic.relname) AS name, i.indisclustered AS clustered,
      tc.relkind = 'm' AS matview
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class tc ON tc.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = tc.relnamespace
    WHERE tc.relnamespace = $1 AND tc.relkind IN ('r', 'm')
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
    ORDER BY tc.relname, ic.relname`);
  const indexDef = (ix: (typeof indexes)[number]) =>
    `${ix.def.replace(` ON ONLY ${ix.qualified} `, ` ON ONLY ${ix.table} `).replace(` ON ${ix.qualified} `, ` ON ${ix.table} `)};\n`;
  for (const ix of indexes) if (!ix.matview) yield indexDef(ix);
  const clustered = await q<{ table: string; name: string }>(`
    SELECT quote_ident(tc.relname) AS table, quote_ident(ic.relname) AS name
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid
    WHERE tc.relnamespace = $1 AND tc.relkind = 'r' AND i.indisclustered`);
  for (const c of clustered) yield `ALTER TABLE ${c.table} CLUSTER ON ${c.name};\n`;

  for (const con of constraints) {
    if (con.type === 'f') yield `ALTER TABLE ONLY ${con.table} ADD CONSTRAINT ${con.name} ${con.def};\n`;
  }

  // Views and materialized views, each after the views it reads.
  const views = await q<{
    oid: Oid;
    name: string;
    kind: 'v' | 'm';
    def: string;
    options: string[] | null;
    populated: boolean;
    comment: string | null;
    deps: Oid[];
  }>(`
    SELECT c.oid::int AS oid, c.relname AS name, c.relkind AS kind, pg_get_viewdef(c.oid) AS def,
      c.reloptions AS options, c.relispopulated AS populated, obj_description(c.oid, 'pg_class') AS comment,
      ARRAY(SELECT DISTINCT d.refobjid::int FROM pg_rewrite r
              JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
             WHERE r.ev_class = c.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid) AS deps
    FROM pg_class c WHERE c.relnamespace = $1 AND c.relkind IN ('v', 'm') ORDER BY c.relname`);
  for (const v of topoSort(
    views,
    (v) => v.oid,
    (v) => v.deps,
  )) {
    const def = v.def.trim().replace(/;$/, '');
    const withOpts = v.options?.length ? ` WITH (${v.options.join(', ')})` : '';
    if (v.kind === 'v') yield `\nCREATE VIEW ${quoteIdent(v.name)}${withOpts} AS\n${def};\n`;
    else yield `\nCREATE MATERIALIZED VIEW ${quoteIdent(v.name)}${withOpts} AS\n${def}\nWITH NO DATA;\n`;
  }
  for (const v of topoSort(
    views,
    (v) => v.oid,
    (v) => v.deps,
  )) {
    if (v.kind === 'm' && v.populated) yield `REFRESH MATERIALIZED VIEW ${quoteIdent(v.name)};\n`;
  }
  for (const ix of indexes) if (ix.matview) yield indexDef(ix);

  return views;
}

/** Triggers, row-level security and policies. */
async function* exportTriggersAndPolicies(q: Query): AsyncGenerator<string> {
  const triggers = await q<{ def: string; qualified: string; table: string }>(`
    SELECT pg_get_triggerdef(t.oid) AS def, format('%I.%I', n.nspname, c.relname) AS qualified,
      quote_ident(c.relname) AS table
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relnamespace = $1 AND NOT t.tgisinternal ORDER BY c.relname, t.tgname`);
  for (const t of triggers) yield `${t.def.replace(` ON ${t.qualified} `, ` ON ${t.table} `)};\n`;

  // Row-level security after the rows. Policies are written TO PUBLIC (role names are not exported),
  // which is what a policy for the preview's own role means once the app has its own database.
  const rls = await q<{ table: string; enable: boolean; force: boolean }>(`
    SELECT quote_ident(c.relname) AS table, c.relrowsecurity AS enable, c.relforcerowsecurity AS force
    FROM pg_class c WHERE c.relnamespace = $1 AND c.relkind = 'r' AND (c.relrowsecurity OR c.relforcerowsecurity)
    ORDER BY c.relname`);
  for (const r of rls) {
    if (r.enable) yield `ALTER TABLE ${r.table} ENABLE ROW LEVEL SECURITY;\n`;
    if (r.force) yield `ALTER TABLE ${r.table} FORCE ROW LEVEL SECURITY;\n`;
  }
  const policies = await q<{
    name: string;
    table: string;
    permissive: boolean;
    cmd: string;
    using: string | null;
    check: string | null;
  }>(`
    SELECT quote_ident(p.polname) AS name, quote_ident(c.relname) AS table, p.polpermissive AS permissive,
      p.polcmd AS cmd, pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS check
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
    WHERE c.relnamespace = $1 ORDER BY c.relname, p.polname`);
  const commands: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };
  for (const p of policies) {
    let s = `CREATE POLICY ${p.name} ON ${p.table} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${commands[p.cmd] ?? 'ALL'} TO PUBLIC`;
    if (p.using !== null) s += ` USING (${p.using})`;
    if (p.check !== null) s += ` WITH CHECK (${p.check})`;
    yield `${s};\n`;
  }
}

/** Comments on tables, views and columns (last: they need every object to exist). */
async function* exportComments(
  tables: TableRow[],
  views: ViewRow[],
  columns: CommentedColumn[],
): AsyncGenerator<string> {
  // Comments last: they need every object to exist.
  for (const t of tables) {
    if (t.comment !== null) yield `COMMENT ON TABLE ${quoteIdent(t.name)} IS ${quoteLiteral(t.comment)};\n`;
  }
  for (const v of views) {
    if (v.comment !== null)
      yield `COMMENT ON ${v.kind === 'm' ? 'MATERIALIZED VIEW' : 'VIEW'} ${quoteIdent(v.name)} IS ${quoteLiteral(v.comment)};\n`;
  }
  const relName = new Map<Oid, string>([...tables, ...views].map((r) => [r.oid, r.name]));
  for (const c of columns) {
    const rel = relName.get(c.rel);
    if (c.comment !== null && rel !== undefined)
      yield `COMMENT ON COLUMN ${quoteIdent(rel)}.${quoteIdent(c.name)} IS ${quoteLiteral(c.comment)};\n`;
  }
}

/** Orders items so each comes after the items (of the same list) it depends on; cycles keep input order. */
function topoSort<T>(items: T[], key: (t: T) => Oid, deps: (t: T) => Oid[]): T[] {
  const byKey = new Map(items.map((t) => [key(t), t]));
  const out: T[] = [];
  const state = new Map<Oid, 'visiting' | 'done'>();
  const visit = (t: T) => {
    const k = key(t);
    if (state.get(k)) return;
    state.set(k, 'visiting');
    for (const d of deps(t)) {
      const dep = byKey.get(d);
      if (dep && d !== k) visit(dep);
    }
    state.set(k, 'done');
    out.push(t);
  };
  for (const t of items) visit(t);
  return out;
}
