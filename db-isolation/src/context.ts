import { ConflictError, TimeoutError } from '@preview/tiers';
import type pg from 'pg';
import type { PreviewNames } from './names.ts';

/** The minimal logger this package writes to (pino fits). */
export interface DbIsolationLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** The options `createDbIsolation` works with, checked and with their defaults applied. */
export interface IsolationSettings {
  previewDatabaseUrl: string;
  connectionLimit: number;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  durableCreate: boolean;
  trustedRoles: string[];
  groupRole: string;
}

/** What the operations of `createDbIsolation` (prepare, create, drop, janitor) share. */
export interface IsolationContext {
  admin: pg.Pool;
  o: IsolationSettings;
  log: DbIsolationLogger;
  /** `SET LOCAL lock_timeout = <lockTimeoutMs>` */
  lockTimeout: string;
  /** Whether the admin pool's user is a superuser (asked once). */
  isSuperuser: () => Promise<boolean>;
  /** A fresh password and its SCRAM verifier (each is used once). */
  nextCredential: () => Promise<{ password: string; verifier: string }>;
}

// Advisory-lock namespace ('prev'); the second key is hashtext(<32 hex>) of the preview.
export const LOCK_NS = 0x70726576;
export const REGISTRY = 'public.preview_schemas';
export const SESSIONS = 'public.preview_sessions';

/**
 * A PostgreSQL error as this package reports it: `55P03` (lock timeout) → TimeoutError `timeout`,
 * `2BP01` (role still owns objects) → ConflictError `conflict`, anything else unchanged.
 */
export function mapPgError(e: unknown, n: PreviewNames, op: string): Error {
  const code = (e as { code?: string }).code;
  if (code === '55P03')
    return new TimeoutError(
      'timeout',
      `${op} ${n.previewId}: the preview's schema is locked by another operation`,
      { cause: e },
    );
  if (code === '2BP01')
    return new ConflictError(
      'conflict',
      `${op} ${n.previewId}: role ${n.role} still owns objects elsewhere`,
      { cause: e },
    );
  return e as Error;
}
