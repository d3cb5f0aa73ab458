import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { ConflictError, TierUnavailableError } from '@preview/tiers';
import type { AccessTokens } from '../auth/access-token.ts';
import { type AuthEnv, requireUser } from '../auth/middleware.ts';
import type { PreviewService } from '../previews.ts';
import { ErrorBody, IdParams, RealtimeRequest, RealtimeSession } from '../schemas.ts';
import type { Session } from '../store/sessions.ts';
import { createRouteGroup, errorResponses as errors, secured } from './route-group.ts';

/** What the Realtime route needs. */
export interface RealtimeRoutesDeps {
  previews: Pick<PreviewService, 'get'>;
  accessTokens: Pick<AccessTokens, 'sign'>;
  /** Life of a Realtime editor token, ms. */
  editorTokenTtlMs: number;
  /** The Supabase Realtime bridges, when configured (read per request: built after the app). */
  realtime?: (() => { ensure(previewId: string): Promise<unknown> } | undefined) | undefined;
}

/**
 * Why a preview cannot be synced over Realtime, as the error to throw, or `undefined` when it can:
 * an ended, failed or stopping preview is `preview_ended`; one on the browser tier, not yet placed or
 * suspended has no server-side sandbox (`no_sync_channel`). Both are 409s.
 */
export function realtimeRefusal(s: Pick<Session, 'id' | 'state' | 'tier'>): ConflictError | undefined {
  if (['ended', 'failed', 'stopping'].includes(s.state))
    return new ConflictError('preview_ended', `preview ${s.id} is ${s.state}`);
  if (!s.tier || s.tier === 'browser' || s.state === 'suspended')
    return new ConflictError(
      'no_sync_channel',
      `preview ${s.id} has no server-side sandbox to sync to (tier ${s.tier ?? 'none'}, ${s.state})`,
    );
  return undefined;
}

/** `POST /v1/previews/{id}/realtime`: a Supabase Realtime bridge for the preview, and an editor token. */
export function realtimeRoutes(deps: RealtimeRoutesDeps): OpenAPIHono<AuthEnv> {
  const app = createRouteGroup();
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/previews/{id}/realtime',
      summary: 'Make sure a Supabase Realtime bridge serves this preview; returns its broadcast topic',
      description:
        'Editors using the Supabase Realtime sync transport call this when they start a session and ' +
        'whenever they hear nothing: a bridge on one router replica (the lease holder, or this one if ' +
        'none) relays the topic to the sync hub. With `editorId` it also mints the editor token the ' +
        'editor shows the bridge in its hello (the bridge admits no editor without one).',
      security: secured,
      request: {
        params: IdParams,
        body: { content: { 'application/json': { schema: RealtimeRequest } }, required: false },
      },
      responses: {
        ...errors,
        200: { description: 'The topic', content: { 'application/json': { schema: RealtimeSession } } },
        409: {
          description: 'The preview has no server-side sandbox to sync to (browser tier, suspended, ended)',
          content: { 'application/json': { schema: ErrorBody } },
        },
        503: {
          description: 'Supabase Realtime is not configured on this router',
          content: { 'application/json': { schema: ErrorBody } },
        },
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const id = c.req.valid('param').id;
      const s = await deps.previews.get(user.userId, id);
      const bridges = deps.realtime?.();
      if (!bridges)
        throw new TierUnavailableError(
          'realtime_unavailable',
          'Supabase Realtime is not configured on this router (SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY)',
          { tier: 'realtime' },
        );
      const refusal = realtimeRefusal(s);
      if (refusal) throw refusal;
      await bridges.ensure(id);
      const editorId = c.req.valid('json')?.editorId;
      if (!editorId) return c.json({ topic: `preview:${id}` }, 200);
      const ttlMs = deps.editorTokenTtlMs;
      const editorToken = await deps.accessTokens.sign({
        previewId: id,
        userId: user.userId,
        kind: 'editor',
        editorId,
        ttlMs,
      });
      return c.json(
        { topic: `preview:${id}`, editorToken, expiresAt: new Date(Date.now() + ttlMs).toISOString() },
        200,
      );
    },
  );
  return app;
}
