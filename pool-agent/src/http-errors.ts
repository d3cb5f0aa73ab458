import { httpStatusOf, InvalidInputError, PreviewError } from '@preview/tiers';
import type { z } from 'zod';

/** HTTP status for any thrown value: the project's one mapping, as a pool agent answers the router. */
export function statusOf(e: unknown): number {
  return e instanceof PreviewError ? httpStatusOf(e, { capacity: 503, other: 502 }) : 500;
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
