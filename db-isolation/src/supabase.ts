/**
 * The roles a Supabase project's own services log in as or switch to: PostgREST (`authenticator`,
 * then `anon` / `authenticated` / `service_role`), Auth, Storage, Realtime, Edge Functions,
 * Supavisor (`pgbouncer`), replication and ETL, the read-only user, the dashboard, and the project
 * owner `postgres`. `prepare()` must leave them their `CONNECT`/`TEMPORARY` on the database and
 * `USAGE` on `public` when it revokes PUBLIC's. Source: supabase/postgres
 * `migrations/db/init-scripts/*.sql` (roles and their grants).
 */
export const SUPABASE_ROLES: readonly string[] = Object.freeze([
  'anon',
  'authenticated',
  'service_role',
  'authenticator',
  'postgres',
  'supabase_admin',
  'supabase_auth_admin',
  'supabase_storage_admin',
  'supabase_functions_admin',
  'supabase_realtime_admin',
  'supabase_replication_admin',
  'supabase_etl_admin',
  'supabase_read_only_user',
  'dashboard_user',
  'pgbouncer',
]);

/**
 * Whether a Postgres URL points at a hosted Supabase database: the direct host
 * `db.<ref>.supabase.co` or the Supavisor pooler `<region>.pooler.supabase.com`.
 *
 * @example
 * isSupabaseDatabaseUrl('postgres://postgres.abc:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres'); // true
 */
export function isSupabaseDatabaseUrl(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return false;
  }
  return host.endsWith('.supabase.co') || host.endsWith('.supabase.com');
}
