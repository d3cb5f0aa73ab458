import { CapacityError, httpStatusOf, PreviewError, UnauthorizedError } from '@preview/tiers';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';

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

/** Status, body and headers for any thrown value. Unknown errors become an opaque 500. */
export function errorResponse(err: unknown): {
  status: ContentfulStatusCode;
  body: ErrorBody;
  headers: Record<string, string>;
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
  return { status: 500, body: { error: { code: 'internal', message: 'internal error' } }, headers };
}

/** `{previewId}` when the failed request named a preview (`/v1/previews/:id/...`), else `{}`. */
function previewOf(c: Context): { previewId?: string } {
  const m = /^\/v1\/previews\/([^/]+)/.exec(c.req.path);
  return m?.[1] ? { previewId: m[1] } : {};
}

/**
 * Hono `onError`: the ONE place errors become HTTP responses.
 * @param counted called with each answer's wire code and status (the errors-by-code metric)
 */
export function onError(log: Logger, counted?: (code: string, status: number) => void) {
  return (err: Error, c: Context) => {
    const { status, body, headers } = errorResponse(err);
    counted?.(body.error.code, status);
    if (status >= 500) log.error({ err, path: c.req.path, ...previewOf(c) }, 'request failed');
    return c.json(body, status, headers);
  };
}
