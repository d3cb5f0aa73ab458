import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { NodeHeartbeat, NodeRegistered, NodeRegistration } from '@preview/tiers';
import { type AuthEnv, requireNode } from '../auth/middleware.ts';
import type { NodeRegistry } from '../nodes.ts';
import type { PreviewService } from '../previews.ts';
import { ErrorBody, IdParams, NodeFailedReport, PreviewView } from '../schemas.ts';
import type { PreviewRoutesDeps } from './previews.ts';
import { createRouteGroup, errorResponses as errors, secured } from './route-group.ts';

/** What the pool agents' routes need. */
export interface NodeRoutesDeps {
  nodes: Pick<NodeRegistry, 'register' | 'heartbeat'>;
  previews: Pick<PreviewService, 'store' | 'failedOnNode'>;
  view: PreviewRoutesDeps['view'];
}

/**
 * The routes pool agents call under `/v1/nodes`: register (join token → node credential), heartbeat,
 * the live sessions on the node, and a preview whose sandbox stopped for good.
 */
export function nodeRoutes(deps: NodeRoutesDeps): OpenAPIHono<AuthEnv> {
  const app = createRouteGroup();
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/register',
      summary: 'A pool agent exchanges the join token for a node credential',
      request: { body: { content: { 'application/json': { schema: NodeRegistration } }, required: true } },
      responses: {
        201: { description: 'Registered', content: { 'application/json': { schema: NodeRegistered } } },
        403: { description: 'Bad join token', content: { 'application/json': { schema: ErrorBody } } },
        ...errors,
      },
    }),
    async (c) => c.json(await deps.nodes.register(c.req.valid('json')), 201),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/heartbeat',
      summary: 'A pool agent reports liveness and capacity',
      security: secured,
      request: { body: { content: { 'application/json': { schema: NodeHeartbeat } }, required: true } },
      responses: {
        200: {
          description: 'Accepted',
          content: {
            'application/json': { schema: z.object({ ok: z.literal(true), nextHeartbeatMs: z.number() }) },
          },
        },
        ...errors,
      },
    }),
    async (c) => {
      const node = requireNode(c);
      return c.json(await deps.nodes.heartbeat(node.nodeId, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/nodes/sessions',
      summary: 'A pool agent asks which of its sessions are live (reconciliation at agent start)',
      security: secured,
      responses: {
        200: {
          description: 'Live session ids placed on this node',
          content: { 'application/json': { schema: z.object({ sessions: z.array(z.string()) }) } },
        },
        ...errors,
      },
    }),
    async (c) => {
      const node = requireNode(c);
      const sessions = (await deps.previews.store.onNode(node.nodeId)).map((s) => s.id);
      return c.json({ sessions }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/previews/{id}/failed',
      summary:
        'A pool agent reports that a preview’s sandbox stopped for good (OOM-killed, killed, its engine restarted)',
      description:
        'OOM-killed: the session becomes `failed` with the reason at once (GET and the SSE `state` event). ' +
        'Otherwise the sandbox was taken away: the session goes `migrating` and is re-placed from its stored ' +
        'files (at most 3 times in 10 minutes, then `failed`). Only the node the preview is on may report it; repeat-safe.',
      security: secured,
      request: {
        params: IdParams,
        body: { content: { 'application/json': { schema: NodeFailedReport } }, required: true },
      },
      responses: {
        200: { description: 'The preview', content: { 'application/json': { schema: PreviewView } } },
        ...errors,
      },
    }),
    async (c) => {
      const node = requireNode(c);
      const body = c.req.valid('json');
      const s = await deps.previews.failedOnNode(
        node.nodeId,
        c.req.valid('param').id,
        body.reason,
        body.oomKilled ?? false,
      );
      return c.json(await deps.view(s), 200);
    },
  );
  return app;
}
