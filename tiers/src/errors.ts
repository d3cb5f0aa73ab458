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

/** The thing does not exist, or the caller may not know that it exists. */
export class NotFoundError extends PreviewError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'not_found', message, options);
    this.name = 'NotFoundError';
  }
}

/** Who is asking is not allowed to do this. */
export class ForbiddenError extends PreviewError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'forbidden', message, options);
    this.name = 'ForbiddenError';
  }
}

/** No credentials, or credentials that do not verify. */
export class UnauthorizedError extends PreviewError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'unauthorized', message, options);
    this.name = 'UnauthorizedError';
  }
}

/** A request conflicts with the current state (an illegal transition, a duplicate). */
export class ConflictError extends PreviewError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'conflict', message, options);
    this.name = 'ConflictError';
  }
}

/** A quota, rate limit or pool is exhausted. `retryAfterMs` says when to try again, if known. */
export class CapacityError extends PreviewError {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options?: { cause?: unknown; code?: string; retryAfterMs?: number }) {
    super(options?.code ?? 'capacity', message, options);
    this.name = 'CapacityError';
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/** A tier cannot serve this preview now; placement falls through to the next tier. */
export class TierUnavailableError extends PreviewError {
  readonly tier: string;
  constructor(tier: string, message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'tier_unavailable', message, options);
    this.name = 'TierUnavailableError';
    this.tier = tier;
  }
}

/** Something slow did not finish in time. */
export class TimeoutError extends PreviewError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'timeout', message, options);
    this.name = 'TimeoutError';
  }
}

export const isPreviewError = (e: unknown): e is PreviewError => e instanceof PreviewError;
