import { OpenAPIHono, z } from '@hono/zod-openapi';
import { zodToInvalidInput } from '@preview/tiers';
import type { AuthEnv } from '../auth/middleware.ts';
import { ErrorBody } from '../schemas.ts';

/**
 * A Hono app for one group of routes, registered on the router's app with `app.route('/', group)`
 * (Hono's way of composing sub-apps; the OpenAPI definitions travel with it). Every group validates
 * the same way: a failed zod check throws `InvalidInputError` naming the field and the rule, and the
 * router's one `onError` turns it into a 400.
 */
export function createRouteGroup(): OpenAPIHono<AuthEnv> {
  return new OpenAPIHono<AuthEnv>({
    defaultHook: (result) => {
      if (!result.success)
        throw zodToInvalidInput(result.error as z.ZodError, {
          where: result.target === 'json' ? 'body' : result.target,
        });
    },
  });
}

/** `Idempotency-Key`: 1–200 visible ASCII characters. */
export const IdempotencyKey = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, 'visible ASCII only');

/** OpenAPI `security` of a route that needs `Authorization: Bearer …`. */
export const secured = [{ bearer: [] as string[] }];

/**
 * The error responses every `/v1` route can give (OpenAPI `responses`). A route with a 503 of its
 * own (a deploy target, Realtime not configured) spreads it first, so its description wins.
 */
export const errorResponses = {
  400: {
    description: 'Invalid input (names the field and rule)',
    content: { 'application/json': { schema: ErrorBody } },
  },
  401: { description: 'No or invalid credentials', content: { 'application/json': { schema: ErrorBody } } },
  404: {
    description: 'Not found (also: another user’s preview)',
    content: { 'application/json': { schema: ErrorBody } },
  },
  429: { description: 'Rate limited (Retry-After)', content: { 'application/json': { schema: ErrorBody } } },
  503: {
    description:
      'Unavailable for now (Retry-After): the router’s Postgres or Redis (`unavailable`, naming it), or a tier',
    content: { 'application/json': { schema: ErrorBody } },
  },
};
