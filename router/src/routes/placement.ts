import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { type AuthEnv, requireUser } from '../auth/middleware.ts';
import type { PreviewService } from '../previews.ts';
import { ErrorBody, IdParams, PreviewView } from '../schemas.ts';
import type { Session } from '../store/sessions.ts';

/** Body of `POST /v1/previews/:id/placement`. */
export const MovePlacementBody = z
  .object({
    tier: z.enum(['docker', 'fly']).openapi({ description: 'The server tier to move to' }),
    reason: z.string().trim().min(1).max(500).openapi({
      description: 'Why (recorded in the preview’s reasons)',
      example: 'WebContainers did not boot in 15 s',
    }),
  })
  .strict()
  .openapi('MovePlacement');

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: ErrorBody } },
});

/**
 * `POST /v1/previews/:id/placement` `{tier, reason}`: the same-id fallback. Moves a browser-tier
 * preview to a server tier keeping its id, files (edits included) and database, and records the
 * reason (`PreviewService.moveToServer`). Used when the browser runtime cannot boot, when the
 * bundler meets a package it cannot bundle, and when the user asks. Answers the preview (201 is not
 * used: nothing new is created); a preview already on that tier is answered as it is.
 */
export function registerPlacementRoute(
  app: OpenAPIHono<AuthEnv>,
  deps: { previews: PreviewService; view: (s: Session) => Promise<unknown> },
): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/previews/{id}/placement',
      summary: 'Move a browser preview to a server tier under the same id',
      security: [{ bearer: [] as string[] }],
      request: {
        params: IdParams,
        body: { content: { 'application/json': { schema: MovePlacementBody } }, required: true },
      },
      responses: {
        200: { description: 'The preview', content: { 'application/json': { schema: PreviewView } } },
        400: errorResponse('Invalid input (names the field and rule)'),
        401: errorResponse('No or invalid credentials'),
        404: errorResponse('Not found (also: another user’s preview)'),
        409: errorResponse('Not a live browser preview'),
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const { tier, reason } = c.req.valid('json');
      const s = await deps.previews.moveToServer(user.userId, c.req.valid('param').id, tier, reason);
      return c.json((await deps.view(s)) as z.infer<typeof PreviewView>, 200);
    },
  );
}
