import { createHash } from 'node:crypto';
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { FileBatch } from '@preview/tiers';
import { type AuthEnv, requireUser } from '../auth/middleware.ts';
import { assertUtf8Body } from '../files-body.ts';
import type { PreviewService } from '../previews.ts';
import {
  CreatePreviewBody,
  ErrorBody,
  EventsHeaders,
  EventsQuery,
  FileContent,
  FilesResult,
  IdParams,
  ListQuery,
  PreviewList,
  PreviewView,
  ProjectIdParams,
} from '../schemas.ts';
import { sseForPreview } from '../sse.ts';
import type { Session } from '../store/sessions.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import type { PreviewViewBody } from './preview-view.ts';
import { createRouteGroup, errorResponses as errors, IdempotencyKey, secured } from './route-group.ts';

/** What the preview routes need. */
export interface PreviewRoutesDeps {
  previews: PreviewService;
  /** A session as the API shows it (see `createPreviewView`). */
  view: (s: Session) => Promise<PreviewViewBody>;
}

/**
 * A user's preview lifecycle under `/v1/previews`: create, list, get, delete, suspend and resume,
 * and `GET /v1/projects/:projectId/preview` (the live preview of one of the caller's projects).
 * Each acts only on the caller's own previews and projects (another user's is a 404).
 */
export function previewLifecycleRoutes({ previews, view }: PreviewRoutesDeps): OpenAPIHono<AuthEnv> {
  const app = createRouteGroup();
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/previews',
      summary: 'Create a preview (classify, place, start)',
      security: secured,
      request: {
        headers: z.object({ 'idempotency-key': IdempotencyKey.optional() }),
        body: { content: { 'application/json': { schema: CreatePreviewBody } }, required: true },
      },
      responses: {
        201: { description: 'Created', content: { 'application/json': { schema: PreviewView } } },
        200: {
          description:
            'The existing preview: same Idempotency-Key, or the live preview of `projectId` (woken if it was suspended)',
          content: { 'application/json': { schema: PreviewView } },
        },
        422: {
          description: 'The Idempotency-Key was used with a different body (`idempotency_mismatch`)',
          content: { 'application/json': { schema: ErrorBody } },
        },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const body = c.req.valid('json');
      const key = c.req.valid('header')['idempotency-key'];
      const { session, created } = await previews.create(
        user.userId,
        {
          files: body.files,
          template: body.template,
          client: body.client,
          serverOnly: body.serverOnly,
          projectId: body.projectId,
        },
        // The validated body (defaults applied, keys in schema order) is what the key is bound to.
        key ? { key, bodyHash: createHash('sha256').update(JSON.stringify(body)).digest('hex') } : undefined,
      );
      return c.json(await view(session), created ? 201 : 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/previews',
      summary: 'List my previews (newest first)',
      security: secured,
      request: { query: ListQuery },
      responses: {
        200: { description: 'Previews', content: { 'application/json': { schema: PreviewList } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const q = c.req.valid('query');
      const before = q.cursor ? decodeCursor(q.cursor) : undefined;
      const rows = await previews.store.list(user.userId, {
        limit: q.limit,
        includeEnded: q.all === 'true',
        before,
      });
      const last = rows.length === q.limit ? rows[rows.length - 1] : undefined;
      return c.json(
        { previews: await Promise.all(rows.map(view)), nextCursor: last ? encodeCursor(last) : null },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/previews/{id}',
      summary: 'Get a preview (with a fresh previewUrl token)',
      security: secured,
      request: { params: IdParams },
      responses: {
        200: { description: 'The preview', content: { 'application/json': { schema: PreviewView } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      return c.json(await view(await previews.get(user.userId, c.req.valid('param').id)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/projects/{projectId}/preview',
      summary: 'Get my live preview of a project (404 when none)',
      security: secured,
      request: { params: ProjectIdParams },
      responses: {
        200: { description: 'The live preview', content: { 'application/json': { schema: PreviewView } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      return c.json(
        await view(await previews.liveInProject(user.userId, c.req.valid('param').projectId)),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/previews/{id}',
      summary: 'Stop and remove a preview (repeat-safe)',
      security: secured,
      request: { params: IdParams },
      responses: { 204: { description: 'Deleted (or already ended)' }, ...errors },
    }),
    async (c) => {
      const user = requireUser(c);
      await previews.delete(user.userId, c.req.valid('param').id);
      return c.body(null, 204);
    },
  );

  for (const action of ['suspend', 'resume'] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/v1/previews/{id}/${action}`,
        summary: action === 'suspend' ? 'Suspend a ready preview' : 'Resume a suspended preview',
        security: secured,
        request: { params: IdParams },
        responses: {
          200: { description: 'The preview', content: { 'application/json': { schema: PreviewView } } },
          409: {
            description: 'Not in a state that allows it',
            content: { 'application/json': { schema: ErrorBody } },
          },
          ...errors,
        },
      }),
      async (c) => {
        const user = requireUser(c);
        const id = c.req.valid('param').id;
        const s =
          action === 'suspend'
            ? await previews.suspend(user.userId, id)
            : await previews.resume(user.userId, id);
        return c.json(await view(s), 200);
      },
    );
  }
  return app;
}

/**
 * What a user's preview holds, under `/v1/previews/{id}`: its stored files, the file batch write path, server-sent
 * events and the database export.
 */
export function previewContentRoutes({
  previews,
}: Pick<PreviewRoutesDeps, 'previews'>): OpenAPIHono<AuthEnv> {
  const app = createRouteGroup();
  // Bytes first: a JSON parser would store invalid UTF-8 as U+FFFD without a word.
  app.put('/v1/previews/:id/files', async (c, next) => {
    assertUtf8Body(new Uint8Array(await c.req.arrayBuffer()));
    await next();
  });
  app.openapi(
    createRoute({
      method: 'put',
      path: '/v1/previews/{id}/files',
      summary: 'Apply a file batch: the sandbox applies it, then it is stored (the one write path)',
      security: secured,
      request: {
        params: IdParams,
        body: { content: { 'application/json': { schema: FileBatch } }, required: true },
      },
      responses: {
        200: { description: 'Acks', content: { 'application/json': { schema: FilesResult } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      return c.json(
        await previews.applyFiles(user.userId, c.req.valid('param').id, c.req.valid('json')),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/previews/{id}/files',
      summary: 'The stored project files (owner only): what an editor or a browser-tier runtime restores',
      description:
        'Every file persisted to `project_files` (the last acked `persisted` batch included): UTF-8 text as a string, other bytes as `{content, encoding: "base64"}`.',
      security: secured,
      request: { params: IdParams },
      responses: {
        200: {
          description: 'path → content',
          content: { 'application/json': { schema: z.record(z.string(), FileContent) } },
        },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const s = await previews.get(user.userId, c.req.valid('param').id);
      return c.json(await previews.store.loadFiles(s.id), 200, { 'cache-control': 'no-store' });
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/previews/{id}/events',
      summary: 'Server-sent events: state, status and log lines',
      description:
        'EventSource may pass the token as `?access_token=`. `?follow=false` ends the stream after the ' +
        'current state and the recent events (what `preview logs` prints without `--follow`). Every stored ' +
        'event carries its id (`id:`); a reconnect with `Last-Event-ID` gets every kept event after it.',
      security: secured,
      request: { params: IdParams, query: EventsQuery, headers: EventsHeaders },
      responses: {
        200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: z.string() } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const s = await previews.get(user.userId, c.req.valid('param').id);
      const lastEventId = c.req.valid('header')['last-event-id'];
      return sseForPreview(c, previews, s, {
        follow: c.req.valid('query').follow !== 'false',
        ...(lastEventId !== undefined ? { lastEventId: Number(lastEventId) } : {}),
      }) as never;
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/previews/{id}/database/export',
      summary: 'Export the preview’s database as SQL (owner only)',
      security: secured,
      request: { params: IdParams },
      responses: {
        200: { description: 'SQL', content: { 'application/sql': { schema: z.string() } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const id = c.req.valid('param').id;
      const out = await previews.exportDatabase(user.userId, id);
      return new Response(typeof out === 'string' ? out : toByteStream(out), {
        status: 200,
        headers: {
          'content-type': 'application/sql; charset=utf-8',
          'content-disposition': `attachment; filename="preview-${id}.sql"`,
        },
      }) as never;
    },
  );
  return app;
}

/** A byte stream of the chunks (strings UTF-8 encoded); an error while reading errors the stream. */
export function toByteStream(chunks: AsyncIterable<string | Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async start(ctrl) {
      try {
        for await (const chunk of chunks)
          ctrl.enqueue(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
        ctrl.close();
      } catch (e) {
        ctrl.error(e);
      }
    },
  });
}
