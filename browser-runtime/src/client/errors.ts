import {
  CapacityError,
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  PreviewError,
  TierUnavailableError,
  TimeoutError,
  UnauthorizedError,
} from '@preview/tiers';

/** A batch the server (or the sandbox) refused; nothing of it was written. */
export class BatchRejectedError extends InvalidInputError {
  readonly seq: number;
  constructor(code: string, message: string, seq: number) {
    super(code, message);
    this.name = 'BatchRejectedError';
    this.seq = seq;
  }
}

/** The sync socket was closed by the server for a reason that reconnecting does not fix. */
export class SyncClosedError extends PreviewError {
  readonly closeCode: number;
  constructor(code: string, message: string, closeCode: number) {
    super(code, message);
    this.name = 'SyncClosedError';
    this.closeCode = closeCode;
  }
}

/** Maps a router HTTP error (`{error:{code,message}}`) to the matching PreviewError subclass. */
export function errorFromResponse(status: number, body: unknown, retryAfter?: string | null): PreviewError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof e?.code === 'string' ? e.code : `http_${status}`;
  const message = typeof e?.message === 'string' ? e.message : `router answered HTTP ${status}`;
  if (status === 400 || status === 422) return new InvalidInputError(code, message);
  if (status === 401) return new UnauthorizedError(message, { code });
  if (status === 403) return new ForbiddenError(message, { code });
  if (status === 404 || status === 410) return new NotFoundError(message, { code });
  if (status === 409) return new ConflictError(message, { code });
  if (status === 429) {
    const s = Number(retryAfter);
    return new CapacityError(message, { code, ...(Number.isFinite(s) ? { retryAfterMs: s * 1000 } : {}) });
  }
  if (status === 503) return new TierUnavailableError('router', message, { code });
  if (status === 504 || status === 408) return new TimeoutError(message, { code });
  return new PreviewError(code, message);
}
