/**
 * The one error hierarchy of the project. Every package throws these; the router's `onError` is the
 * single place that maps them to HTTP.
 *
 * @example
 * throw new InvalidInputError('invalid_path', 'ops[0].path: must be relative (got "/etc/passwd")');
 */
export class PreviewError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PreviewError';
    this.code = code;
  }
}

/** Bad input from a caller: names the field and the rule it broke. */
export class InvalidInputError extends PreviewError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'InvalidInputError';
  }
}

/**
 * Bad configuration (an environment variable, a constructor option): the one class and the one code
 * (`invalid_config`) every package uses for it. An `InvalidInputError`, so the edges answer 400.
 * @example throw new ConfigError('invalid_config', 'FLY_APP: required');
 */
export class ConfigError extends InvalidInputError {
  constructor(code: 'invalid_config', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ConfigError';
  }
}

/**
 * The thing does not exist, or the caller may not know that it exists (HTTP 404).
 * @example throw new NotFoundError('not_found', `preview ${id}: not found`);
 */
export class NotFoundError extends PreviewError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'NotFoundError';
  }
}

/**
 * Who is asking is not allowed to do this (HTTP 403).
 * @example throw new ForbiddenError('forbidden', 'preview belongs to another user');
 */
export class ForbiddenError extends PreviewError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ForbiddenError';
  }
}

/**
 * No credentials, or credentials that do not verify (HTTP 401).
 * @example throw new UnauthorizedError('unauthorized', 'Authorization: Bearer token required');
 */
export class UnauthorizedError extends PreviewError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'UnauthorizedError';
  }
}

/**
 * A request conflicts with the current state: an illegal transition, a duplicate (HTTP 409).
 * @example throw new ConflictError('conflict', 'preview is stopping');
 */
export class ConflictError extends PreviewError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ConflictError';
  }
}

/**
 * A quota, rate limit or pool is exhausted. `options.retryAfterMs` (milliseconds) says when to try
 * again, if known.
 * @example throw new CapacityError('capacity', 'pool full', { retryAfterMs: 5000 });
 */
export class CapacityError extends PreviewError {
  readonly retryAfterMs: number | undefined;
  constructor(
    code: string,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number | undefined },
  ) {
    super(code, message, options);
    this.name = 'CapacityError';
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * A tier cannot serve this preview now; placement falls through to the next tier. `options.tier`
 * names the tier (or the peer) that could not.
 * @example throw new TierUnavailableError('tier_unavailable', 'no pool node', { tier: 'docker' });
 */
export class TierUnavailableError extends PreviewError {
  readonly tier: string;
  constructor(code: string, message: string, options: { tier: string; cause?: unknown }) {
    super(code, message, options);
    this.name = 'TierUnavailableError';
    this.tier = options.tier;
  }
}

/**
 * Something slow did not finish in time (HTTP 504).
 * @example throw new TimeoutError('timeout', 'daemon did not answer in 5000 ms');
 */
export class TimeoutError extends PreviewError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'TimeoutError';
  }
}

export const isPreviewError = (e: unknown): e is PreviewError => e instanceof PreviewError;

/**
 * Turns an error answer of one of our own HTTP services (the router, a pool agent), whose body is
 * `{error: {code, message}}`, back into the `PreviewError` it was raised as. `peer` names who answered:
 * it is the `tier` of a `TierUnavailableError` and goes into the message when the body has none.
 * `retryAfter` is the `Retry-After` header (seconds) of a 429.
 *
 * @example
 * if (!res.ok) throw errorFromHttp(res.status, await res.json(), 'router', res.headers.get('retry-after'));
 */
export function errorFromHttp(
  status: number,
  body: unknown,
  peer: string,
  retryAfter?: string | null,
): PreviewError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof e?.code === 'string' ? e.code : `http_${status}`;
  const message = typeof e?.message === 'string' ? e.message : `${peer} answered HTTP ${status}`;
  switch (status) {
    case 400:
    case 422:
      return new InvalidInputError(code, message);
    case 401:
      return new UnauthorizedError(code, message);
    case 403:
      return new ForbiddenError(code, message);
    case 404:
    case 410:
      return new NotFoundError(code, message);
    case 409:
      return new ConflictError(code, message);
    case 429: {
      const s = Number(retryAfter ?? Number.NaN);
      return new CapacityError(code, message, Number.isFinite(s) ? { retryAfterMs: s * 1000 } : undefined);
    }
    case 503:
      return code === 'capacity'
        ? new CapacityError(code, message)
        : new TierUnavailableError(code, message, { tier: peer });
    case 408:
    case 504:
      return new TimeoutError(code, message);
  }
  return status >= 500
    ? new TierUnavailableError(code, message, { tier: peer })
    : new PreviewError(code, message);
}

/**
 * The HTTP status our services answer an error with (first match wins); `errorFromHttp` reads it
 * back. Two choices differ by audience: `capacity` is 429 toward clients (with Retry-After) and 503
 * with code `capacity` from a pool agent to the router; `other` is the status of a PreviewError of
 * no narrower class.
 *
 * @example
 * const status = httpStatusOf(err, { capacity: 429, other: 500 });
 */
export function httpStatusOf(
  e: PreviewError,
  o: { capacity: 429 | 503; other: 500 | 502 },
): 400 | 401 | 403 | 404 | 409 | 429 | 500 | 502 | 503 | 504 {
  if (e instanceof InvalidInputError) return 400;
  if (e instanceof UnauthorizedError) return 401;
  if (e instanceof ForbiddenError) return 403;
  if (e instanceof NotFoundError) return 404;
  if (e instanceof ConflictError) return 409;
  if (e instanceof CapacityError) return o.capacity;
  if (e instanceof TierUnavailableError) return 503;
  if (e instanceof TimeoutError) return 504;
  return o.other;
}
