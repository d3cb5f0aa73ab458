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
import type { z } from 'zod';

/** HTTP status for an error of the project's hierarchy (the agent's one mapping). */
export function statusOf(e: unknown): number {
  if (e instanceof InvalidInputError) return 400;
  if (e instanceof UnauthorizedError) return 401;
  if (e instanceof ForbiddenError) return 403;
  if (e instanceof NotFoundError) return 404;
  if (e instanceof ConflictError) return 409;
  if (e instanceof CapacityError) return 503;
  if (e instanceof TierUnavailableError) return 503;
  if (e instanceof TimeoutError) return 504;
  if (e instanceof PreviewError) return 502;
  return 500;
}

export function errorBody(e: unknown): { error: { code: string; message: string } } {
  if (e instanceof PreviewError) return { error: { code: e.code, message: e.message } };
  return { error: { code: 'internal', message: 'internal error' } };
}

/** The inverse of {@link statusOf}, for clients of the agent API. */
export function errorFromResponse(status: number, body: unknown, tier = 'docker'): PreviewError {
  const err = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
  const code = err?.code ?? `http_${status}`;
  const message = err?.message ?? `agent answered ${status}`;
  switch (status) {
    case 400:
      return new InvalidInputError(code, message);
    case 401:
      return new UnauthorizedError(message, { code });
    case 403:
      return new ForbiddenError(message, { code });
    case 404:
      return new NotFoundError(message, { code });
    case 409:
      return new ConflictError(message, { code });
    case 503:
      return code === 'capacity'
        ? new CapacityError(message, { code })
        : new TierUnavailableError(tier, message, { code });
    case 504:
      return new TimeoutError(message, { code });
    default:
      return status >= 500
        ? new TierUnavailableError(tier, message, { code })
        : new PreviewError(code, message);
  }
}

/** A zod failure as `InvalidInputError('invalid_body')` naming each field and its rule. */
export function bodyError(error: z.ZodError): InvalidInputError {
  const msg = error.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`)
    .join('; ');
  return new InvalidInputError('invalid_body', msg);
}
