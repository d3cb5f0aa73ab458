import { randomBytes, randomUUID } from 'node:crypto';
import { InvalidInputError } from '@preview/tiers';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  applyMigrations,
  createIsolatedDb,
  createQuietTestDatabase,
  type IsolatedDb,
} from '../test/test-db.ts';
import { createDbIsolation } from './db-isolation.ts';

let t: IsolatedDb;
beforeEach(async () => {
  t = await createIsolatedDb({ connectionLimit: 2, statementTimeoutMs: 300 });
});
afterEach(async () => {
  await t?.close();
});

/** The SQLSTATE a query fails with (or 'ok'). */
async function sqlstate(c: pg.Client, sql: string): Promise<string> {
  try {
    await c.query(sql);
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

describe('a preview role', () => {
  it('gets its own schema, search_path, timeout and limits', async () => {
    const id = randomUUID();
    const p = await t.iso.create(id);
    const hex = id.replaceAll('-', '');
    expect(p).toMatchObject({ previewId: id, schema: `preview_${hex}`, role: `p_${hex}` });
    expect(new URL(p.databaseUrl).username).toBe(p.role);
    expect(new URL(p.databaseUrl).pathname).toBe(`/${t.db.name}`);
    // Prisma's form: the same credentials and database, with the schema named.
    const prisma = new URL(p.prismaDatabaseUrl);
    expect(prisma.searchParams.get('schema')).toBe(p.schema);
    prisma.searchParams.delete('schema');
    expect(prisma.toString()).toBe(new URL(p.databaseUrl).toString());
    expect(t.iso.endpoint).toEqual({
      host: new URL(t.db.url).hostname,
      port: Number(new URL(t.db.url).port || 5432),
    });
    const role = await t.db.pool.query(
      `SELECT a.rolcanlogin, a.rolsuper, a.rolcreaterole, a.rolcreatedb, a.rolconnlimit, r.rolconfig, a.rolpassword
         FROM pg_authid a JOIN pg_roles r ON r.oid = a.oid WHERE a.rolname = $1`,
      [p.role],
    );
    expect(role.rows[0]).toMatchObject({
      rolcanlogin: true,
      rolsuper: false,
      rolcreaterole: false,
      rolcreatedb: false,
      rolconnlimit: 2,
    });
    expect(role.rows[0].rolconfig).toEqual(
      expect.arrayContaining(['statement_timeout=300', `search_path=${p.schema}`]),
    );
    expect(role.rows[0].rolpassword).toMatch(/^SCRAM-SHA-256\$256:/);
    const reg = await t.db.pool.query(
      'SELECT schema_name, role_name, state FROM preview_schemas WHERE preview_id = $1',
      [id],
    );
    expect(reg.rows).toEqual([{ schema_name: p.schema, role_name: p.role, state: 'active' }]);

    await t.withClient(p.databaseUrl, async (c) => {
      await c.query('CREATE TABLE items (id int PRIMARY KEY, name text)');
      await c.query(`INSERT INTO items VALUES (1, 'one')`);
      const r = await c.query<{ schema: string }>(
        `SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'items'`,
      );
      expect(r.rows).toEqual([{ schema: p.schema }]);
      expect(await sqlstate(c, 'CREATE TEMP TABLE scratch (x int)')).toBe('ok');
    });
  });

  it("cannot read, write or list another preview's schema, or public", async () => {
    const a = await t.iso.create(randomUUID());
    const b = await t.iso.create(randomUUID());
    await t.withClient(a.databaseUrl, (c) =>
      c.query(`CREATE TABLE secret (v text); INSERT INTO secret VALUES ('a')`),
    );
    await t.withClient(b.databaseUrl, async (c) => {
      expect(await sqlstate(c, `SELECT * FROM ${a.schema}.secret`)).toBe('42501');
      expect(await sqlstate(c, `INSERT INTO ${a.schema}.secret VALUES ('b')`)).toBe('42501');
      expect(await sqlstate(c, `CREATE TABLE ${a.schema}.planted (x int)`)).toBe('42501');
      expect(await sqlstate(c, 'SELECT * FROM public.preview_sessions')).toBe('42501');
      expect(await sqlstate(c, 'SELECT * FROM public.preview_schemas')).toBe('42501');
      expect(await sqlstate(c, 'CREATE TABLE public.planted (x int)')).toBe('42501');
      const listed = await c.query(
        `SELECT table_schema, table_name FROM information_schema.tables
          WHERE table_schema NOT IN ('pg_catalog', 'information_schema', $1)`,
        [b.schema],
      );
      expect(listed.rows).toEqual([]);
      const schemas = await c.query(
        'SELECT schema_name FROM information_schema.schemata WHERE schema_name = ANY($1)',
        [[a.schema, 'public']],
      );
      expect(schemas.rows).toEqual([]);
    });
    // A's row is untouched.
    const rows = await t.db.pool.query(`SELECT v FROM ${a.schema}.secret`);
    expect(rows.rows).toEqual([{ v: 'a' }]);
  });

  it('cannot create a schema or escape through SET ROLE, SET SESSION AUTHORIZATION or search_path', async () => {
    const a = await t.iso.create(randomUUID());
    const b = await t.iso.create(randomUUID());
    await t.withClient(a.databaseUrl, (c) =>
      c.query(`CREATE TABLE secret (v text); INSERT INTO secret VALUES ('a')`),
    );
    await t.withClient(b.databaseUrl, async (c) => {
      expect(await sqlstate(c, 'CREATE SCHEMA evil')).toBe('42501');
      expect(await sqlstate(c, `SET ROLE ${a.role}`)).toBe('42501');
      expect(await sqlstate(c, 'SET ROLE postgres')).toBe('42501');
      expect(await sqlstate(c, 'SET SESSION AUTHORIZATION postgres')).toBe('42501');
      expect(await sqlstate(c, `ALTER ROLE ${b.role} SUPERUSER`)).toBe('42501');
      expect(await sqlstate(c, `GRANT ${a.role} TO ${b.role}`)).toBe('42501');
      // Pointing search_path at A skips the schema B may not use: nothing of A's resolves.
      await c.query(`SET search_path = ${a.schema}, public`);
      expect(await sqlstate(c, 'SELECT * FROM secret')).toBe('42P01');
      expect(await sqlstate(c, 'SELECT * FROM preview_sessions')).toBe('42P01');
      // The shared group role (the one thing B may SET ROLE to) holds no data privileges either.
      await c.query('SET search_path = DEFAULT');
      expect(await sqlstate(c, 'SET ROLE preview_users')).toBe('ok');
      expect(await sqlstate(c, `SELECT * FROM ${a.schema}.secret`)).toBe('42501');
      expect(await sqlstate(c, 'CREATE SCHEMA evil')).toBe('42501');
    });
    await t.withClient(a.databaseUrl, async (ca) => {
      const pid = (await ca.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await t.withClient(b.databaseUrl, async (cb) => {
        expect(await sqlstate(cb, `SELECT pg_terminate_backend(${pid})`)).toBe('42501');
      });
    });
  });

  it('has its long queries cancelled by statement_timeout', async () => {
    const p = await t.iso.create(randomUUID());
    await t.withClient(p.databaseUrl, async (c) => {
      expect(await sqlstate(c, 'SELECT pg_sleep(3)')).toBe('57014');
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    });
  });

  it('is refused one connection more than its limit', async () => {
    const p = await t.iso.create(randomUUID());
    const open: pg.Client[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = new pg.Client({ connectionString: p.databaseUrl });
        await c.connect();
        open.push(c);
      }
      const extra = new pg.Client({ connectionString: p.databaseUrl });
      await expect(extra.connect()).rejects.toMatchObject({ code: '53300' });
      await extra.end().catch(() => {});
    } finally {
      await Promise.all(open.map((c) => c.end()));
    }
  });
});

describe('create and drop', () => {
  it('create again keeps the data and issues a new password', async () => {
    const id = randomUUID();
    const first = await t.iso.create(id);
    await t.withClient(first.databaseUrl, (c) =>
      c.query('CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)'),
    );
    const hash = async () =>
      (await t.db.pool.query('SELECT rolpassword FROM pg_authid WHERE rolname = $1', [first.role])).rows[0]
        .rolpassword;
    const before = await hash();
    const second = await t.iso.create(id);
    expect(second.databaseUrl).not.toBe(first.databaseUrl);
    expect(new URL(second.databaseUrl).password).not.toBe(new URL(first.databaseUrl).password);
    expect(await hash()).not.toBe(before);
    const r = await t.withClient(second.databaseUrl, (c) => c.query('SELECT x FROM kept'));
    expect(r.rows).toEqual([{ x: 7 }]);
  });

  it('many previews can be created at once', async () => {
    const ids = Array.from({ length: 20 }, () => randomUUID());
    const made = await Promise.all(ids.map((id) => t.iso.create(id)));
    expect(new Set(made.map((p) => p.schema)).size).toBe(20);
    const n = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM preview_schemas WHERE state = 'active' AND preview_id = ANY($1)`,
      [ids],
    );
    expect(n.rows[0].n).toBe(20);
  });

  it('two concurrent creates of one preview both succeed on one schema', async () => {
    const id = randomUUID();
    const [a, b] = await Promise.all([t.iso.create(id), t.iso.create(id)]);
    expect(a.schema).toBe(b.schema);
    const n = await t.db.pool.query('SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1', [
      a.schema,
    ]);
    expect(n.rows[0].n).toBe(1);
  });

  it('drop removes schema and role, ends open sessions, records it, and is repeat-safe', async () => {
    const id = randomUUID();
    const p = await t.iso.create(id);
    const open = new pg.Client({ connectionString: p.databaseUrl });
    open.on('error', () => {});
    await open.connect();
    await open.query('CREATE TABLE x (v int)');
    // An open transaction holding its table's strongest lock does not stop the drop.
    await open.query('BEGIN; LOCK TABLE x IN ACCESS EXCLUSIVE MODE');
    try {
      expect(await t.iso.drop(id)).toBe(true);
      await expect(open.query('SELECT 1')).rejects.toBeTruthy();
    } finally {
      await open.end().catch(() => {});
    }
    const left = await t.db.pool.query(
      `SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname = $1) AS schemas,
              (SELECT count(*)::int FROM pg_roles WHERE rolname = $2) AS roles`,
      [p.schema, p.role],
    );
    expect(left.rows[0]).toEqual({ schemas: 0, roles: 0 });
    const reg = await t.db.pool.query(
      'SELECT state, dropped_at IS NOT NULL AS at FROM preview_schemas WHERE preview_id = $1',
      [id],
    );
    expect(reg.rows).toEqual([{ state: 'dropped', at: true }]);
    expect(await t.iso.get(id)).toMatchObject({
      previewId: id,
      schema: p.schema,
      role: p.role,
      state: 'dropped',
    });
    expect(await t.iso.get(randomUUID())).toBeNull();
    expect(await t.iso.drop(id)).toBe(false);
    expect(await t.iso.drop(randomUUID())).toBe(false);
    // A dropped preview can be created again, empty.
    const again = await t.iso.create(id);
    expect(await t.iso.get(id)).toMatchObject({ state: 'active', droppedAt: null });
    const r = await t.withClient(again.databaseUrl, (c) =>
      c.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1`, [
        again.schema,
      ]),
    );
    expect(r.rows[0].n).toBe(0);
  });

  it('prepare is idempotent and leaves the router and existing roles working', async () => {
    await t.iso.prepare();
    const r = await t.iso.prepare();
    expect(r.schemasGrantedToPublic).not.toContain('public');
    await t.db.pool.query(
      `INSERT INTO preview_sessions (user_id, template) VALUES ('00000000-0000-4000-8000-000000000001', 'vite')`,
    );
    expect((await t.db.pool.query('SELECT count(*)::int AS n FROM preview_sessions')).rows[0].n).toBe(1);
    const privs = await t.db.pool.query(
      `SELECT has_schema_privilege('authenticated', 'public', 'USAGE') AS auth_usage,
              has_database_privilege('authenticated', current_database(), 'CONNECT') AS auth_connect,
              has_schema_privilege('public', 'public', 'USAGE') AS public_usage,
              has_database_privilege('public', current_database(), 'CONNECT') AS public_connect,
              has_database_privilege('public', current_database(), 'TEMPORARY') AS public_temp`,
    );
    expect(privs.rows[0]).toEqual({
      auth_usage: true,
      auth_connect: true,
      public_usage: false,
      public_connect: false,
      public_temp: false,
    });
  });
});

describe('input checks', () => {
  it('rejects bad preview ids with InvalidInputError naming the field', async () => {
    for (const bad of ['not-a-uuid', "x'; DROP TABLE preview_sessions; --", '', 'preview_00', null, 42]) {
      for (const call of [
        () => t.iso.create(bad as string),
        () => t.iso.drop(bad as string),
        () => t.iso.export(bad as string),
        () => t.iso.get(bad as string),
      ]) {
        await expect(call()).rejects.toMatchObject({
          name: 'InvalidInputError',
          code: 'invalid_preview_id',
          message: expect.stringContaining('previewId'),
        });
      }
    }
    const n = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname LIKE 'preview\\_%'`,
    );
    expect(n.rows[0].n).toBe(0);
  });

  it('checks options at construction and names the bad one', () => {
    const admin = t.db.pool;
    const url = t.db.url;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ admin, previewDatabaseUrl: 'http://db:5432/app' }, 'previewDatabaseUrl'],
      [{ admin, previewDatabaseUrl: 'postgres://db:5432' }, 'previewDatabaseUrl'],
      [{ admin: {}, previewDatabaseUrl: url }, 'admin'],
      [{ admin, previewDatabaseUrl: url, connectionLimit: 0 }, 'connectionLimit'],
      [{ admin, previewDatabaseUrl: url, statementTimeoutMs: 1.5 }, 'statementTimeoutMs'],
      [{ admin, previewDatabaseUrl: url, groupRole: 'Bad Role' }, 'groupRole'],
      [{ admin, previewDatabaseUrl: url, groupRole: `p_${'a'.repeat(32)}` }, 'groupRole'],
    ];
    for (const [options, name] of cases) {
      // Bad configuration is one class everywhere: ConfigError (an InvalidInputError), code invalid_config.
      expect(() => createDbIsolation(options as never)).toThrow(
        expect.objectContaining({
          name: 'ConfigError',
          code: 'invalid_config',
          message: expect.stringContaining(`option ${name}`),
        }),
      );
      expect(() => createDbIsolation(options as never)).toThrow(InvalidInputError);
    }
  });
});

describe('with an admin that is not a superuser (the Supabase case)', () => {
  it('prepares, creates, isolates, exports and drops as the database owner with CREATEROLE', async () => {
    const db = await createQuietTestDatabase();
    const owner = `adm_t_${randomBytes(6).toString('hex')}`;
    await db.pool.query(`CREATE ROLE ${owner} LOGIN CREATEROLE; ALTER DATABASE ${db.name} OWNER TO ${owner}`);
    const url = new URL(db.url);
    url.username = owner;
    const admin = new pg.Pool({ connectionString: url.toString(), max: 4 });
    admin.on('error', () => {}); // see createQuietTestDatabase
    const iso = createDbIsolation({ admin, previewDatabaseUrl: db.url, trustedRoles: ['anon'] });
    const id = randomUUID();
    try {
      expect(
        (await admin.query<{ s: boolean }>('SELECT rolsuper AS s FROM pg_roles WHERE rolname = current_user'))
          .rows[0]!.s,
      ).toBe(false);
      await applyMigrations(admin);
      await iso.prepare();
      const p = await iso.create(id);
      await t.withClient(p.databaseUrl, async (c) => {
        await c.query(
          `CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'x')`,
        );
        expect(await sqlstate(c, 'SELECT * FROM public.preview_sessions')).toBe('42501');
        expect(await sqlstate(c, 'CREATE SCHEMA evil')).toBe('42501');
      });
      let sql = '';
      for await (const chunk of await iso.export(id)) sql += chunk;
      expect(sql).toContain('CREATE TABLE "notes"');
      expect(sql).toContain('1\tx');
      const privs = await admin.query(
        `SELECT has_schema_privilege('anon', 'public', 'USAGE') AS anon, has_schema_privilege('authenticated', 'public', 'USAGE') AS auth`,
      );
      expect(privs.rows[0]).toEqual({ anon: true, auth: true });
      expect(await iso.drop(id)).toBe(true);
      const left = await admin.query('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1', [p.role]);
      expect(left.rows[0].n).toBe(0);
    } finally {
      await iso.drop(id).catch(() => {});
      await admin.end();
      await db.drop();
      const c = new pg.Client({ connectionString: db.url.replace(`/${db.name}`, '/postgres') });
      await c.connect();
      await c.query(`DROP ROLE IF EXISTS ${owner}`).finally(() => c.end());
    }
  });
});

describe('prepare across databases', () => {
  it('two databases prepared at once with a new group role both succeed', async () => {
    const other = await createIsolatedDb();
    const group = `preview_grp_${randomBytes(6).toString('hex')}`;
    try {
      const isos = [t.db, other.db].map((d) =>
        createDbIsolation({ admin: d.pool, previewDatabaseUrl: d.url, groupRole: group }),
      );
      const results = await Promise.all(isos.map((i) => i.prepare()));
      expect(results).toHaveLength(2);
      for (const d of [t.db, other.db]) {
        const r = await d.pool.query(
          `SELECT has_database_privilege($1, current_database(), 'CONNECT') AS ok`,
          [group],
        );
        expect(r.rows[0].ok).toBe(true);
      }
    } finally {
      for (const d of [t.db, other.db]) await d.pool.query(`DROP OWNED BY ${group}`).catch(() => {});
      await t.db.pool.query(`DROP ROLE IF EXISTS ${group}`);
      await other.close();
    }
  });
});
