import { randomBytes } from 'node:crypto';
import { InvalidInputError, NotFoundError } from '@preview/tiers';
import pg from 'pg';
import { type IsolationContext, REGISTRY } from './context.ts';
import { namesFor } from './names.ts';

/** What {@link seedPreview} did. */
export interface SeedResult {
  /** Wall time of the seed (login, SQL, commit), in milliseconds. */
  ms: number;
}

/**
 * How long a seed's login role may log in, ms: it is dropped when the seed ends, this only bounds a
 * role left behind by a router that died mid-seed.
 */
const SEED_ROLE_VALID_MS = 10 * 60_000;

/**
 * `DbIsolation.seed()`: runs `sql` (one or more statements, PostgreSQL's simple query protocol) in
 * the preview's schema with the preview role's rights, in one transaction.
 *
 * It never runs as the admin: `SET ROLE` on an admin connection is undone by `RESET ROLE` in the
 * caller's SQL. Instead a one-off login role `ps_<hex>_<random>` is made (CONNECTION LIMIT 1, a
 * random password, `VALID UNTIL` now + 10 min) that is a member of `p_<hex>` and of nothing else;
 * the seed connects as it (host, port and database of the admin pool) and runs `SET ROLE p_<hex>`,
 * so what it creates belongs to the preview. SQL that resets the role falls back to the one-off
 * role, which has no rights of its own. Afterwards its sessions are ended, anything it came to own
 * is reassigned to `p_<hex>`, and it is dropped.
 *
 * @throws NotFoundError `no_database` when the preview has no active schema.
 * @throws InvalidInputError `seed_failed` with PostgreSQL's message, and the line and column of
 *   `sql` it points at when it points at one (the transaction is rolled back).
 */
export async function seedPreview(
  ctx: IsolationContext,
  previewId: string,
  sql: string,
  opts: { timeoutMs: number },
): Promise<SeedResult> {
  const started = performance.now();
  const n = namesFor(previewId);
  const active = await ctx.admin.query(
    `SELECT 1 FROM ${REGISTRY} r JOIN pg_namespace s ON s.nspname = r.schema_name
      WHERE r.preview_id = $1 AND r.state = 'active'`,
    [n.previewId],
  );
  if (!active.rows[0])
    throw new NotFoundError('no_database', `preview ${n.previewId} has no database schema`);
  const login = `ps_${n.hex}_${randomBytes(4).toString('hex')}`;
  const { password, verifier } = await ctx.nextCredential();
  const until = new Date(Date.now() + SEED_ROLE_VALID_MS).toISOString();
  // Every name is hex, the verifier base64 plus '$:' and the date ISO: nothing here is caller text.
  await ctx.admin.query(`CREATE ROLE ${login} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT
    NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 1 VALID UNTIL '${until}' PASSWORD '${verifier}' IN ROLE ${n.role}`);
  try {
    const client = new pg.Client({
      ...connectionAs(ctx.admin, login, password),
      statement_timeout: opts.timeoutMs,
      query_timeout: opts.timeoutMs + 1000,
      connectionTimeoutMillis: 10_000,
    });
    client.on('error', () => {});
    await client.connect();
    try {
      await client.query(`SET ROLE ${n.role}; SET search_path = ${n.schema}`);
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK').catch(() => {});
        throw seedError(e, sql);
      }
    } finally {
      await client.end().catch(() => {});
    }
  } finally {
    await dropLogin(ctx, login, n.role);
  }
  ctx.log.info({ previewId: n.previewId, bytes: Buffer.byteLength(sql) }, 'preview seeded');
  return { ms: Math.round(performance.now() - started) };
}

/** pg client settings for the admin pool's server and database, logging in as `user`. */
function connectionAs(admin: pg.Pool, user: string, password: string): pg.ClientConfig {
  const { connectionString, host, port, database, ssl } = admin.options;
  if (connectionString) {
    // pg lets the URL's user and password win over the fields: put ours into the URL.
    const url = new URL(connectionString);
    url.username = user;
    url.password = password;
    return { connectionString: url.toString(), ...(ssl !== undefined ? { ssl } : {}) };
  }
  return {
    user,
    password,
    ...(host !== undefined ? { host } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(database !== undefined ? { database } : {}),
    ...(ssl !== undefined ? { ssl } : {}),
  };
}

/** Ends the one-off role's sessions, gives what it owns to the preview role and drops it. */
async function dropLogin(ctx: IsolationContext, login: string, role: string): Promise<void> {
  try {
    await ctx.admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [
      login,
    ]);
    await ctx.admin.query(
      `REASSIGN OWNED BY ${login} TO ${role}; DROP OWNED BY ${login}; DROP ROLE ${login}`,
    );
  } catch (err) {
    // It cannot log in after VALID UNTIL; it owns nothing that is not reassigned above.
    ctx.log.warn({ role: login, err: (err as Error).message }, 'seed role not dropped');
  }
}

/** A seed's PostgreSQL error as `seed_failed`, with the line and column `position` points at. */
function seedError(e: unknown, sql: string): Error {
  const pgErr = e as { message?: string; position?: string; detail?: string; hint?: string };
  if (typeof pgErr.message !== 'string') return e as Error;
  let where = '';
  const pos = Number(pgErr.position);
  if (Number.isInteger(pos) && pos > 0) {
    // position counts characters (1-based) of the query text as sent.
    const lines = [...sql]
      .slice(0, pos - 1)
      .join('')
      .split('\n');
    const line = lines.length;
    const column = [...(lines[lines.length - 1] ?? '')].length + 1;
    where = ` at position ${pos} (line ${line}, column ${column})`;
  }
  const detail = pgErr.detail ? `; ${pgErr.detail}` : '';
  const hint = pgErr.hint ? `; hint: ${pgErr.hint}` : '';
  return new InvalidInputError('seed_failed', `sql: ${pgErr.message}${where}${detail}${hint}`, { cause: e });
}
