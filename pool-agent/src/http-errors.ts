import { httpStatusOf, type InvalidInputError, PreviewError, zodToInvalidInput } from '@preview/tiers';
import type { z } from 'zod';

/** HTTP status for any thrown value: the project's one mapping, as a pool agent answers the router. */
export function statusOf(e: unknown): number {
  return e instanceof PreviewError ? httpStatusOf(e, { capacity: 503, other: 502 }) : 500;
}

export function errorBody(e: unknown): { error: { code: string; message: string } } {
  if (e instanceof PreviewError) return { error: { code: e.code, message: e.message } };
  return { error: { code: 'internal', message: 'internal error' } };
}

/** A zod failure of a request body as `InvalidInputError('invalid_body')` (the agent's wire code). */
export const bodyError = (error: z.ZodError): InvalidInputError =>
  zodToInvalidInput(error, { where: 'body', code: 'invalid_body' });
