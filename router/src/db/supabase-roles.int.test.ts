/**
 * The router's database hardening (`prepare()`) on a database laid out like a Supabase project's:
 * its roles and their usual grants (supabase/postgres init scripts), in a Postgres cluster of the
 * test's own (roles are cluster-wide, so they are not made in the machine's shared Postgres).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDbIsolation } from '@preview/db-isolation';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.ts';
import { type EmbeddedPostgresHandle, startEmbeddedPostgres } from './embedded-postgres.ts';
import { migrate } from './migrate.ts';

const SUPABASE_DATABASE_URL =
  'postgres://postgres.abcdefghijklmnopqrst:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres';
const PASSWORD = 'role-password';

/** Roles that log in, and what each does on a Supabase project once connected. */
const LOGIN_ROLES: Record<string, string[]> = {
  // PostgREST: connects as authenticator, switches to the request's role.
  authenticator: [
    'SET ROLE anon',
    'SELECT count(*) FROM public.todos',
    'RESET ROLE',
    'SET ROLE authenticated',
    "INSERT INTO public.todos (title) VALUES ('from authenticated')",
    'RESET ROLE',
    'SET ROLE service_role',
    'DELETE FROM public.todos WHERE false',
  ],
  supabase_auth_admin: ["INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'a@example.com')"],
  supabase_storage_admin: ["INSERT INTO storage.objects (name) VALUES ('avatar.png')"],
  supabase_read_only_user: ['SELECT count(*) FROM public.todos', 'SELECT count(*) FROM auth.users'],
  supabase_replication_admin: ['SELECT 1'],
  pgbouncer: ['SELECT 1'],
  dashboard_user: ['SELECT 1'],
};

/** The roles of a new Supabase project (abridged from supabase/postgres init scripts). */
const SUPABASE_ROLES_SQL = `
  CREATE ROLE supabase_admin LOGIN SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS PASSWORD '${PASSWORD}';
  CREATE ROLE supabase_replication_admin LOGIN REPLICATION PASSWORD '${PASSWORD}';
  CREATE ROLE supabase_read_only_user LOGIN BYPASSRLS PASSWORD '${PASSWORD}';
  GRANT pg_read_all_data TO supabase_read_only_user;
  CREATE ROLE anon NOLOGIN NOINHERIT;
  CREATE ROLE authenticated NOLOGIN NOINHERIT;
  CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '${PASSWORD}';
  GRANT anon, authenticated, service_role TO authenticator;
  CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE PASSWORD '${PASSWORD}';
  CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE PASSWORD '${PASSWORD}';
  CREATE ROLE dashboard_user LOGIN CREATEROLE CREATEDB REPLICATION PASSWORD '${PASSWORD}';
  CREATE ROLE pgbouncer LOGIN PASSWORD '${PASSWORD}';
`;

/** The schemas and grants of a Supabase project's database. */
const SUPABASE_DATABASE_SQL = `
  CREATE SCHEMA extensions;
  GRANT USAGE ON SCHEMA public, extensions TO postgres, anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO postgres, anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;
  ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
  CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
  CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
  ALTER TABLE auth.users OWNER TO supabase_auth_admin;
  GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
  CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
  CREATE TABLE storage.objects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text);
  ALTER TABLE storage.objects OWNER TO supabase_storage_admin;
  GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role;
  CREATE TABLE public.todos (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text);
`;

describe('prepare() on a Supabase-like database keeps Supabase roles working', () => {
  let server: EmbeddedPostgresHandle;
  let dir: string;
  let admin: pg.Client;
  const pools: pg.Pool[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'supabase-roles-'));
    server = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), log: pino({ level: 'silent' }) });
    admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query(SUPABASE_ROLES_SQL);
  }, 120_000);

  afterAll(async () => {
    for (const p of pools) await p.end().catch(() => {});
    await admin?.end().catch(() => {});
    await server?.stop().catch(() => {});
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A Supabase-style project database named `name`, hardened by the router as main.ts does. */
  async function routerDatabase(name: string, trustedRoles: string[]): Promise<string> {
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(server.url);
    url.pathname = `/${name}`;
    const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
    pools.push(pool);
    // Supabase's schemas and grants, then the router's start-up: migrations, prepare().
    await pool.query(SUPABASE_DATABASE_SQL);
    await migrate(pool);
    await createDbIsolation({ admin: pool, previewDatabaseUrl: url.toString(), trustedRoles }).prepare();
    return url.toString();
  }

  async function runAs(url: string, role: string, statements: string[]): Promise<void> {
    const u = new URL(url);
    u.username = role;
    u.password = PASSWORD;
    const client = new pg.Client({ connectionString: u.toString() });
    await client.connect();
    try {
      for (const s of statements) await client.query(s);
    } finally {
      await client.end();
    }
  }

  it('with the roles the router config gives a Supabase DATABASE_URL, every Supabase role connects and works', async () => {
    const config = loadConfig({ DATABASE_URL: SUPABASE_DATABASE_URL });
    const url = await routerDatabase('project_a', config.PREVIEW_DB_TRUSTED_ROLES);
    for (const [role, statements] of Object.entries(LOGIN_ROLES))
      await expect(runAs(url, role, statements).then(() => role)).resolves.toBe(role);
    // The hardening still holds for everyone else: a new login role gets nothing through PUBLIC.
    await admin.query(`CREATE ROLE outsider LOGIN PASSWORD '${PASSWORD}'`);
    await expect(runAs(url, 'outsider', ['SELECT 1'])).rejects.toThrow(/permission denied for database/);
  });

  it('without trusted roles (the router before PREVIEW_DB_TRUSTED_ROLES) PostgREST, Auth and Storage are locked out', async () => {
    const url = await routerDatabase('project_b', []);
    for (const role of ['authenticator', 'supabase_auth_admin', 'supabase_storage_admin', 'pgbouncer'])
      await expect(runAs(url, role, ['SELECT 1'])).rejects.toThrow(/permission denied for database/);
  });
});
