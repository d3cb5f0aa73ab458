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

/** A zod failure as `InvalidInputError('invalid_body')` naming each field and its rule. */
export function bodyError(error: z.ZodError): InvalidInputError {
  const msg = error.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.message}`)
    .join('; ');
  return new InvalidInputError('invalid_body', msg);
}
