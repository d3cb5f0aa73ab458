import { isIP } from 'node:net';
import type { Redis } from 'ioredis';
import pg from 'pg';

/** The router's own backing services: while one is down the API answers 503 `unavailable`, not 500. */
export type Dependency = 'postgres' | 'redis';

/** Where a dependency listens: TCP `host`/`port`, or a Unix socket `path`. */
export interface Endpoint {
  host?: string | undefined;
  port?: number | undefined;
  path?: string | undefined;
}

/**
 * Where the router's Postgres and Redis listen. A socket error (refused, reset, timed out) carries
 * the address it was about; one that names one of these is that dependency being down.
 */
export interface DependencyEndpoints {
  postgres?: Endpoint | undefined;
  redis?: Endpoint | undefined;
}

/** Which dependency an error says is down, and why in a few words (`connection refused`, ...). */
export interface Unavailable {
  dependency: Dependency;
  reason: string;
}

/**
 * The endpoints of the router's pool and Redis client, resolved the way the libraries resolve them:
 * a `pg.Client` made from the pool's options (not connected: it only parses them, PG* variables and
 * defaults included) and ioredis's parsed `options`.
 */
export function dependencyEndpoints(pool: pg.Pool, redis?: Redis): DependencyEndpoints {
  const probe = new pg.Client(pool.options);
  const postgres: Endpoint = probe.host?.startsWith('/')
    ? { path: `${probe.host}/.s.PGSQL.${probe.port}` }
    : { host: probe.host, port: probe.port };
  const o = redis?.options;
  return { postgres, redis: o && (o.path ? { path: o.path } : { host: o.host, port: o.port }) };
}

/** Socket error codes of a peer that is not there (Node's `err.code`, from libuv). */
const SOCKET_CODES: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ETIMEDOUT: 'connect timeout',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found',
  ENOENT: 'no such socket',
};

/**
 * Postgres SQLSTATEs of a server that cannot serve now (PostgreSQL manual, Appendix A "PostgreSQL
 * Error Codes"): class 08 connection exception, 53300 too_many_connections, 57P01 admin_shutdown
 * (a fast shutdown or pg_terminate_backend), 57P02 crash_shutdown, 57P03 cannot_connect_now ("the
 * database system is shutting down" / "is starting up").
 */
function pgStateReason(code: string): string | undefined {
  if (code.startsWith('08')) return 'connection exception';
  return (
    {
      '53300': 'too many connections',
      '57P01': 'terminated',
      '57P02': 'crashed',
      '57P03': 'not accepting connections',
    } as Record<string, string>
  )[code];
}

/**
 * Messages node-postgres itself raises when its connection is gone (pg/lib/client.js, pg-pool/index.js,
 * pg 8): a connection the server closed, a client left broken by that, a connect timeout.
 */
const PG_MESSAGES: ReadonlyArray<[RegExp, string]> = [
  [/^Connection terminated( unexpectedly| due to connection timeout)?$/, 'connection terminated'],
  [/^Client has encountered a connection error and is not queryable$/, 'connection terminated'],
  [/^timeout exceeded when trying to connect$/, 'connect timeout'],
];

/**
 * What ioredis raises for a command it could not deliver (ioredis 5, built/redis/event_handler.js and
 * Redis.js): `MaxRetriesPerRequestError` once reconnecting outlasted `maxRetriesPerRequest`, the
 * connection closed for good, the offline queue off; and the server's `LOADING` reply while it
 * loads its dataset after a restart.
 */
function redisReason(e: Error): string | undefined {
  if (e.name === 'MaxRetriesPerRequestError') return 'no connection';
  if (e.message === 'Connection is closed.') return 'connection closed';
  if (e.message === "Stream isn't writeable and enableOfflineQueue options is false") return 'no connection';
  if (e.name === 'ReplyError' && e.message.startsWith('LOADING ')) return 'loading its dataset';
  return undefined;
}

function matches(e: { address?: unknown; port?: unknown }, at: Endpoint | undefined): boolean {
  if (!at) return false;
  if (at.path) return e.address === at.path;
  if (e.port !== at.port) return false;
  // A name (localhost, db.example.com) resolves to addresses the error names instead: the port decides.
  return !at.host || !isIP(at.host) || e.address === at.host;
}

function socketReason(
  e: Error & { code?: unknown; address?: unknown; port?: unknown },
  at: DependencyEndpoints,
) {
  const reason = typeof e.code === 'string' ? SOCKET_CODES[e.code] : undefined;
  if (!reason) return undefined;
  if (matches(e, at.postgres)) return { dependency: 'postgres' as const, reason };
  if (matches(e, at.redis)) return { dependency: 'redis' as const, reason };
  return undefined;
}

/** One error (no cause followed). */
function classifyOne(e: Error, at: DependencyEndpoints): Unavailable | undefined {
  if (e instanceof pg.DatabaseError) {
    const reason = e.code ? pgStateReason(e.code) : undefined;
    return reason ? { dependency: 'postgres', reason } : undefined;
  }
  for (const [re, reason] of PG_MESSAGES) if (re.test(e.message)) return { dependency: 'postgres', reason };
  const redis = redisReason(e);
  if (redis) return { dependency: 'redis', reason: redis };
  return socketReason(e, at);
}

/**
 * Whether `err` says the router's Postgres or Redis is unavailable (down, restarting, shutting down,
 * refusing connections), and which: the error itself, the errors of an `AggregateError` (a connect
 * that tried several addresses) and its `cause` chain are looked at, a few levels deep. Anything
 * else (a failed query, a constraint, a bug) is `undefined`: it stays a 500.
 *
 * @example
 * unavailableDependency(err, dependencyEndpoints(pool, redis)) // { dependency: 'postgres', reason: 'connection refused' }
 */
export function unavailableDependency(err: unknown, at: DependencyEndpoints = {}): Unavailable | undefined {
  const queue: Array<{ e: unknown; depth: number }> = [{ e: err, depth: 0 }];
  while (queue.length) {
    const { e, depth } = queue.shift()!;
    if (!(e instanceof Error) || depth > 4) continue;
    const found = classifyOne(e, at);
    if (found) return found;
    if (e instanceof AggregateError) for (const x of e.errors) queue.push({ e: x, depth: depth + 1 });
    if (e.cause !== undefined) queue.push({ e: e.cause, depth: depth + 1 });
  }
  return undefined;
}
