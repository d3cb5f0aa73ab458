import { CapacityError, httpStatusOf, PreviewError, UnauthorizedError } from '@preview/tiers';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';
import { type DependencyEndpoints, type Unavailable, unavailableDependency } from './dependency-errors.ts';

export interface ErrorBody {
  error: { code: string; message: string };
}

/**
 * Codes whose HTTP status is more precise than their class's: 413 Content Too Large
 * (RFC 9110 §15.5.14) for a body over `MAX_REQUEST_BODY_BYTES`, 422 Unprocessable Content
 * (RFC 9110 §15.5.21; the IETF Idempotency-Key draft's answer) for a key reused with another body,
 * 502 Bad Gateway (RFC 9110 §15.6.3) when a deploy's target database refused a statement.
 */
const STATUS_BY_CODE: Readonly<Record<string, ContentfulStatusCode>> = {
  body_too_large: 413,
  idempotency_mismatch: 422,
  deploy_failed: 502,
};

/**
 * `Retry-After` (seconds, RFC 9110 §10.2.3) of a 503 `unavailable`: a Postgres or Redis restart
 * takes a few seconds, and clients retrying sooner only add load to a service coming back.
 */
export const DEPENDENCY_RETRY_AFTER_S = 2;

/**
 * Status, body and headers for any thrown value. An error that says the router's own Postgres or
 * Redis is unavailable (see `unavailableDependency`; `dependencies` tells their addresses) is a 503
 * `unavailable` with `Retry-After`, naming the dependency; other unknown errors an opaque 500.
 */
export function errorResponse(
  err: unknown,
  dependencies?: DependencyEndpoints,
): {
  status: ContentfulStatusCode;
  body: ErrorBody;
  headers: Record<string, string>;
  /** Set when the answer is a 503 `unavailable`: which dependency, and why. */
  unavailable?: Unavailable;
} {
  const headers: Record<string, string> = {};
  if (err instanceof PreviewError) {
    const status = STATUS_BY_CODE[err.code] ?? httpStatusOf(err, { capacity: 429, other: 500 });
    if (err instanceof CapacityError && err.retryAfterMs !== undefined)
      headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
    if (err instanceof UnauthorizedError) headers['www-authenticate'] = 'Bearer';
    return { status, body: { error: { code: err.code, message: err.message } }, headers };
  }
  if (err instanceof HTTPException && err.status < 500) {
    const code = err.status === 400 ? 'invalid_request' : 'http_error';
    const message = /json/i.test(err.message) ? `body: ${err.message} (rule json)` : err.message;
    return { status: err.status as ContentfulStatusCode, body: { error: { code, message } }, headers };
  }
  const unavailable = unavailableDependency(err, dependencies);
  if (unavailable) {
    headers['retry-after'] = String(DEPENDENCY_RETRY_AFTER_S);
    const message = `${unavailable.dependency} is unavailable (${unavailable.reason}); retry after ${DEPENDENCY_RETRY_AFTER_S} s`;
    return { status: 503, body: { error: { code: 'unavailable', message } }, headers, unavailable };
  }
  return { status: 500, body: { error: { code: 'internal', message: 'internal error' } }, headers };
}

/** `{previewId}` when the failed request named a preview (`/v1/previews/:id/...`), else `{}`. */
function previewOf(c: Context): { previewId?: string } {
  const m = /^\/v1\/previews\/([^/]+)/.exec(c.req.path);
  return m?.[1] ? { previewId: m[1] } : {};
}

/**
 * Hono `onError`: the ONE place errors become HTTP responses. A 503 `unavailable` is logged as a
 * warning naming the dependency (`{dependency, reason}`, message `dependency unavailable`); other
 * 5xx as errors (`request failed`).
 * @param options.counted called with each answer's wire code and status (the errors-by-code metric)
 * @param options.dependencies where the router's Postgres and Redis listen (`dependencyEndpoints`)
 */
export function onError(
  log: Logger,
  options: {
    counted?: ((code: string, status: number) => void) | undefined;
    dependencies?: DependencyEndpoints | undefined;
  } = {},
) {
  return (err: Error, c: Context) => {
    const { status, body, headers, unavailable } = errorResponse(err, options.dependencies);
    options.counted?.(body.error.code, status);
    if (unavailable)
      log.warn({ err, ...unavailable, path: c.req.path, ...previewOf(c) }, 'dependency unavailable');
    else if (status >= 500) log.error({ err, path: c.req.path, ...previewOf(c) }, 'request failed');
    return c.json(body, status, headers);
  };
}
