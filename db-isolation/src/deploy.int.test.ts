import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import type { TestDatabase } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIsolatedDb, createQuietTestDatabase, type IsolatedDb } from '../test/test-db.ts';
import { connectTarget } from './deploy.ts';

// Issue 16, deploy with data: a preview schema (enum, an advanced sequence, identity, a foreign
// key, a view, rows) copied into a second, empty database on the test server, then refused,
// replaced, and failed half-way with the target left as it was. Seeding runs as the preview's role.
const APP = `
CREATE TYPE status AS ENUM ('todo', 'doing', 'done');
CREATE SEQUENCE ticket_no START 100;
CREATE TABLE projects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE tasks (
  id serial PRIMARY KEY,
  project_id bigint NOT NULL REFERENCES projects (id),
  ticket integer NOT NULL DEFAULT nextval('ticket_no'),
  title text NOT NULL,
  state status NOT NULL DEFAULT 'todo'
);
CREATE INDEX tasks_state ON tasks (state);
CREATE VIEW open_tasks AS SELECT id, title FROM tasks WHERE state <> 'done';
INSERT INTO projects (name) VALUES ('alpha'), ('beta');
INSERT INTO tasks (project_id, title, state)
  SELECT 1 + i % 2, 'task ' || i, (ARRAY['todo','doing','done']::status[])[1 + i % 3] FROM generate_series(1, 50) i;
SELECT nextval('ticket_no') FROM generate_series(1, 7);
`;

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Tables, types and sequences of a schema with their row counts / values: a fingerprint of "unchanged". */
async function shape(db: TestDatabase, schema = 'public') {
  const { rows } = await db.pool.query<{ kind: string; name: string }>(
    `SELECT 'rel:' || c.relkind::text AS kind, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1
     UNION ALL SELECT 'type', t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = $1 AND t.typtype = 'e'
     ORDER BY 1, 2`,
    [schema],
  );
  return rows.map((r) => `${r.kind} ${r.name}`);
}

describe('deploy a preview database with its data', () => {
  let idb: IsolatedDb;
  let target: TestDatabase;
  const previewId = randomUUID();
  let previewUrl: string;
  beforeAll(async () => {
    idb = await createIsolatedDb();
    target = await createQuietTestDatabase();
    previewUrl = (await idb.iso.create(previewId)).databaseUrl;
    await idb.withClient(previewUrl, (c) => c.query(APP));
  });
  afterAll(async () => {
    await target?.drop();
    await idb?.close();
  });

  it('reproduces the schema and rows in an empty database and reports what it did', async () => {
    const report = await idb.iso.deploy(previewId, { databaseUrl: target.url });
    expect(report.schema).toBe('public');
    expect(report.tables).toEqual([
      { name: 'projects', rows: 2 },
      { name: 'tasks', rows: 50 },
    ]);
    expect(report.sequences).toEqual([
      { name: 'projects_id_seq', value: '2' },
      { name: 'tasks_id_seq', value: '50' },
      { name: 'ticket_no', value: '156' },
    ]);
    expect(report.replaced).toEqual([]);
    expect(report.ms).toBeGreaterThanOrEqual(0);

    const t = target.pool;
    const src = await idb.withClient(previewUrl, (c) =>
      c.query('SELECT id, project_id, ticket, title, state::text FROM tasks ORDER BY id'),
    );
    const dst = await t.query('SELECT id, project_id, ticket, title, state::text FROM tasks ORDER BY id');
    expect(dst.rows).toEqual(src.rows);
    // Sequences continue where the preview's are.
    expect((await t.query(`SELECT nextval('ticket_no')::int AS n`)).rows[0].n).toBe(157);
    const ins = await t.query(
      `INSERT INTO tasks (project_id, title, state) VALUES (2, 'new', 'doing') RETURNING id, ticket`,
    );
    expect(ins.rows[0]).toEqual({ id: 51, ticket: 158 });
    expect((await t.query(`INSERT INTO projects (name) VALUES ('gamma') RETURNING id`)).rows[0].id).toBe('3');
    // The enum is an enum, the foreign key holds, the view and index came along.
    await expect(
      t.query(`INSERT INTO tasks (project_id, title, state) VALUES (1, 'x', 'nope')`),
    ).rejects.toThrow(/invalid input value for enum status/);
    await expect(t.query(`INSERT INTO tasks (project_id, title) VALUES (999, 'orphan')`)).rejects.toThrow(
      /violates foreign key constraint/,
    );
    expect((await t.query('SELECT count(*)::int AS n FROM open_tasks')).rows[0].n).toBe(34);
    expect((await t.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'tasks_state'`)).rowCount).toBe(1);
  });

  it('refuses a target with tables of the same names unless replace, then replaces them', async () => {
    const before = await shape(target);
    const refused = idb.iso.deploy(previewId, { databaseUrl: target.url });
    await expect(refused).rejects.toMatchObject({ code: 'target_conflict', name: 'ConflictError' });
    await expect(refused).rejects.toThrow(/tables projects, tasks and .*type status.*replace: true/);
    expect(await shape(target)).toEqual(before);
    expect((await target.pool.query('SELECT count(*)::int AS n FROM tasks')).rows[0].n).toBe(51);

    const report = await idb.iso.deploy(previewId, { databaseUrl: target.url, replace: true });
    expect(report.replaced).toEqual(
      expect.arrayContaining([
        'view open_tasks',
        'table projects',
        'table tasks',
        'sequence ticket_no',
        'type status',
      ]),
    );
    expect((await target.pool.query('SELECT count(*)::int AS n FROM tasks')).rows[0].n).toBe(50);
    expect((await target.pool.query(`SELECT nextval('ticket_no')::int AS n`)).rows[0].n).toBe(157);
  });

  it('deploys into a named schema, which it creates', async () => {
    const report = await idb.iso.deploy(previewId, { databaseUrl: target.url, schema: 'app_v2' });
    expect(report.schema).toBe('app_v2');
    expect((await target.pool.query('SELECT count(*)::int AS n FROM app_v2.tasks')).rows[0].n).toBe(50);
    expect((await target.pool.query(`SELECT 'done'::app_v2.status::text AS s`)).rows[0].s).toBe('done');
  });

  it('leaves the target unchanged when a statement fails half-way, and names it', async () => {
    const other = await createQuietTestDatabase();
    try {
      // An index named like the preview's primary key: tables and rows load, then ADD CONSTRAINT fails.
      await other.pool.query(
        'CREATE TABLE keep (id int); INSERT INTO keep VALUES (1); CREATE INDEX tasks_pkey ON keep (id)',
      );
      const before = await shape(other);
      const failed = idb.iso.deploy(previewId, { databaseUrl: other.url });
      await expect(failed).rejects.toMatchObject({ code: 'deploy_failed' });
      await expect(failed).rejects.toThrow(/ADD CONSTRAINT tasks_pkey.*"tasks_pkey" already exists/);
      expect(await shape(other)).toEqual(before);
      expect((await other.pool.query('SELECT count(*)::int AS n FROM keep')).rows[0].n).toBe(1);

      // replace drops only objects of the exported names, RESTRICT: a table using the type blocks it.
      await other.pool.query(`CREATE TYPE status AS ENUM ('a'); CREATE TABLE uses_status (s status)`);
      const before2 = await shape(other);
      const blocked = idb.iso.deploy(previewId, { databaseUrl: other.url, replace: true });
      await expect(blocked).rejects.toThrow(/dropping type status.*other objects depend on it/);
      expect(await shape(other)).toEqual(before2);
    } finally {
      await other.drop();
    }
  });

  it('connects to the pinned address, not to what the host name resolves to now (DNS rebinding)', async () => {
    // `.invalid` never resolves (RFC 6761): only the pinned address can be reached.
    const named = new URL(target.url);
    named.hostname = 'deploy-target.invalid';
    await expect(connectTarget(named.toString())).rejects.toMatchObject({ code: 'target_unreachable' });
    const client = await connectTarget(named.toString(), { address: new URL(target.url).hostname });
    try {
      expect((await client.query('SELECT current_database() AS d')).rows[0].d).toBe(named.pathname.slice(1));
    } finally {
      await client.end();
    }
    const report = await idb.iso.deploy(previewId, {
      databaseUrl: named.toString(),
      address: new URL(target.url).hostname,
      schema: 'pinned',
    });
    expect(report.schema).toBe('pinned');
  });

  it('names the field when the target refuses the login, is unreachable, or the input is bad', async () => {
    const noRole = new URL(target.url);
    noRole.username = `nobody_${randomUUID().slice(0, 8)}`;
    noRole.password = 'wrong';
    await expect(idb.iso.deploy(previewId, { databaseUrl: noRole.toString() })).rejects.toMatchObject({
      code: 'target_refused',
      message: expect.stringMatching(/^databaseUrl: the target refused the login: .*does not exist/),
    });
    const noDb = new URL(target.url);
    noDb.pathname = '/no_such_database_here';
    await expect(idb.iso.deploy(previewId, { databaseUrl: noDb.toString() })).rejects.toMatchObject({
      code: 'target_refused',
    });
    const closed = `postgres://postgres@127.0.0.1:${await freePort()}/x`;
    await expect(idb.iso.deploy(previewId, { databaseUrl: closed })).rejects.toMatchObject({
      code: 'target_unreachable',
      message: expect.stringMatching(/^databaseUrl: could not reach the target/),
    });
    for (const bad of ['mysql://h/db', 'postgres://h', 'not a url', `postgres://h/${'x'.repeat(2100)}`])
      await expect(idb.iso.deploy(previewId, { databaseUrl: bad })).rejects.toMatchObject({
        code: 'invalid_database_url',
        message: expect.stringMatching(/^databaseUrl: must be a postgres:\/\//),
      });
    await expect(
      idb.iso.deploy(previewId, { databaseUrl: target.url, schema: 'Bad-Name' }),
    ).rejects.toMatchObject({
      code: 'invalid_target_schema',
      message: expect.stringMatching(/^schema: must be a lowercase SQL identifier/),
    });
    await expect(
      idb.iso.deploy(randomUUID(), { databaseUrl: target.url, schema: 'nope' }),
    ).rejects.toMatchObject({
      name: 'NotFoundError',
    });
    expect((await target.pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'nope'`)).rowCount).toBe(0);
  });
});

describe('seed a preview database as the preview role', () => {
  let idb: IsolatedDb;
  const previewId = randomUUID();
  const otherId = randomUUID();
  let previewUrl: string;
  let otherSchema: string;
  beforeAll(async () => {
    idb = await createIsolatedDb();
    previewUrl = (await idb.iso.create(previewId)).databaseUrl;
    const other = await idb.iso.create(otherId);
    otherSchema = other.schema;
    await idb.withClient(other.databaseUrl, (c) =>
      c.query('CREATE TABLE secrets (s text); INSERT INTO secrets VALUES (1)'),
    );
  });
  afterAll(async () => {
    await idb?.close();
  });

  const seedRoles = async () =>
    (
      await idb.db.pool.query('SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)', [
        `ps_${previewId.replaceAll('-', '')}`,
      ])
    ).rows.map((r) => r.rolname);

  it('runs the SQL in the preview schema; the rows are visible through its DATABASE_URL', async () => {
    const r = await idb.iso.seed(
      previewId,
      `CREATE TABLE fruit (id serial PRIMARY KEY, name text NOT NULL);
       INSERT INTO fruit (name) VALUES ('apple'), ('pear');`,
    );
    expect(r.ms).toBeGreaterThanOrEqual(0);
    const rows = await idb.withClient(previewUrl, (c) => c.query('SELECT name FROM fruit ORDER BY id'));
    expect(rows.rows.map((x) => x.name)).toEqual(['apple', 'pear']);
    // Owned by the preview's role, so the preview can change it.
    const owner = await idb.db.pool.query(`SELECT tableowner FROM pg_tables WHERE tablename = 'fruit'`);
    expect(owner.rows[0].tableowner).toBe(`p_${previewId.replaceAll('-', '')}`);
    await idb.withClient(previewUrl, (c) => c.query(`INSERT INTO fruit (name) VALUES ('fig')`));
    expect(await seedRoles()).toEqual([]);
  });

  it('cannot leave its schema: search_path, RESET ROLE, other schemas, the router tables', async () => {
    const attempts: Array<[string, RegExp]> = [
      ['SET search_path TO public; CREATE TABLE escaped (x int)', /no schema has been selected to create in/],
      ['RESET ROLE; CREATE TABLE public.escaped (x int)', /permission denied for schema public/],
      ['SET ROLE postgres', /permission denied to set role "postgres"/],
      ['SET SESSION AUTHORIZATION postgres', /permission denied to set session authorization/],
      [`SELECT * FROM ${otherSchema}.secrets`, /permission denied for schema preview_/],
      [`RESET ROLE; SELECT * FROM ${otherSchema}.secrets`, /permission denied for schema preview_/],
      ['SELECT * FROM public.preview_sessions', /permission denied for schema public/],
      [`SELECT set_config('role', 'postgres', false)`, /permission denied to set role "postgres"/],
    ];
    for (const [sql, error] of attempts) {
      await expect(idb.iso.seed(previewId, sql), sql).rejects.toMatchObject({
        code: 'seed_failed',
        message: expect.stringMatching(error),
      });
    }
    expect((await idb.db.pool.query(`SELECT 1 FROM pg_tables WHERE tablename = 'escaped'`)).rowCount).toBe(0);
    expect(await seedRoles()).toEqual([]);
  });

  it('rolls back on error and reports the message with its line and column', async () => {
    const first = `CREATE TABLE veg (name text); INSERT INTO veg VALUES ('kale');`;
    const sql = `${first}\nSELECT nonsense FROM veg;`;
    await expect(idb.iso.seed(previewId, sql)).rejects.toMatchObject({
      code: 'seed_failed',
      name: 'InvalidInputError',
      message: `sql: column "nonsense" does not exist at position ${first.length + 9} (line 2, column 8)`,
    });
    const veg = await idb.withClient(previewUrl, (c) => c.query(`SELECT to_regclass('veg') AS t`));
    expect(veg.rows[0].t).toBeNull();
  });

  it('answers no_database for a preview without a schema', async () => {
    await expect(idb.iso.seed(randomUUID(), 'SELECT 1')).rejects.toMatchObject({ code: 'no_database' });
  });
});
