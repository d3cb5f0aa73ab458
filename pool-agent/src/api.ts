import {
  type Ack,
  FileBatch,
  InvalidInputError,
  type NodeCapacity,
  NotFoundError,
  type ScriptRun,
  UnauthorizedError,
} from '@preview/tiers';
import { Hono } from 'hono';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { TokenSet } from './auth.ts';
import { bodyError, errorBody, statusOf } from './http-errors.ts';
import type { AgentStatus } from './lifecycle.ts';
import { ClaimBody, type ClaimResult, PreviewIdSchema } from './schemas.ts';

/** What the API routes call; the agent wires its claims, lifecycle, pools and metrics in. */
export interface AgentApiContext {
  tokens: TokenSet;
  claim(body: ClaimBody, options: { signal?: AbortSignal }): Promise<ClaimResult>;
  apply(previewId: string, batch: FileBatch): Promise<Ack>;
  suspend(previewId: string): Promise<void>;
  resume(previewId: string): Promise<void>;
  destroy(previewId: string): Promise<boolean>;
  status(previewId: string): Promise<AgentStatus | undefined>;
  logs(previewId: string, tail: number): Promise<string[]>;
  runScript(previewId: string, name: string): Promise<ScriptRun>;
  capacity(): NodeCapacity;
  list(): Array<{ previewId: string; state: string; template: string }>;
  metrics(): Promise<{ body: string; contentType: string }>;
  log: Logger;
}

const Tail = z.coerce.number().int().min(1).max(5000).default(200);

/**
 * The agent's HTTP API (pool-agent/README.md "API"): every route needs an accepted token; bodies are
 * checked with zod and a bad one answers 400 naming the field and the rule; errors answer
 * `{error:{code,message}}` with the project's one status mapping.
 *
 * @example
 * const app = createAgentApi(ctx);
 * const res = await app.request('/v1/capacity', { headers: { authorization: `Bearer ${token}` } });
 */
export function createAgentApi(c: AgentApiContext): Hono {
  const app = new Hono();
  app.onError((e, ctx) => {
    const status = statusOf(e);
    if (status >= 500) {
      const previewId = /^\/v1\/previews\/([^/]+)/.exec(ctx.req.path)?.[1];
      c.log.error({ err: e, path: ctx.req.path, ...(previewId ? { previewId } : {}) }, 'request failed');
    }
    return ctx.json(errorBody(e), status as 400);
  });
  app.notFound((ctx) =>
    ctx.json({ error: { code: 'not_found', message: `no route ${ctx.req.method} ${ctx.req.path}` } }, 404),
  );
  app.use('*', async (ctx, next) => {
    const headers = {
      authorization: ctx.req.header('authorization'),
      'x-agent-token': ctx.req.header('x-agent-token'),
    };
    if (!c.tokens.accepts(headers))
      throw new UnauthorizedError('unauthorized', 'missing or invalid bearer token');
    await next();
  });

  app.post('/v1/previews', async (ctx) => {
    const r = ClaimBody.safeParse(await jsonBody(ctx.req.raw));
    if (!r.success) throw bodyError(r.error);
    return ctx.json(await c.claim(r.data, { signal: ctx.req.raw.signal }), 201);
  });
  app.post('/v1/previews/:id/apply', async (ctx) => {
    const id = previewId(ctx.req.param('id'));
    const r = FileBatch.safeParse(await jsonBody(ctx.req.raw));
    if (!r.success) throw bodyError(r.error);
    return ctx.json(await c.apply(id, r.data));
  });
  app.post('/v1/previews/:id/suspend', async (ctx) => {
    await c.suspend(previewId(ctx.req.param('id')));
    return ctx.json({ ok: true });
  });
  app.post('/v1/previews/:id/resume', async (ctx) => {
    await c.resume(previewId(ctx.req.param('id')));
    return ctx.json({ ok: true });
  });
  app.delete('/v1/previews/:id', async (ctx) =>
    ctx.json({ destroyed: await c.destroy(previewId(ctx.req.param('id'))) }),
  );
  app.get('/v1/previews/:id/status', async (ctx) => {
    const id = previewId(ctx.req.param('id'));
    const s = await c.status(id);
    if (!s) throw new NotFoundError('preview_not_found', `no preview ${id} on this node`);
    return ctx.json(s);
  });
  app.get('/v1/previews/:id/logs', async (ctx) => {
    const id = previewId(ctx.req.param('id'));
    const tail = Tail.safeParse(ctx.req.query('tail'));
    if (!tail.success) throw new InvalidInputError('invalid_query', `tail: ${tail.error.issues[0]?.message}`);
    return ctx.json({ lines: await c.logs(id, tail.data) });
  });
  app.post('/v1/previews/:id/scripts/:name', async (ctx) => {
    const name = ctx.req.param('name');
    if (!/^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$/.test(name))
      throw new InvalidInputError('invalid_script', 'script name: 1-64 of A-Z a-z 0-9 : . _ -, not first');
    return ctx.json(await c.runScript(previewId(ctx.req.param('id')), name));
  });
  app.get('/v1/capacity', (ctx) => ctx.json(c.capacity()));
  app.get('/v1/previews', (ctx) => ctx.json({ previews: c.list() }));
  app.get('/metrics', async (ctx) => {
    const m = await c.metrics();
    return ctx.text(m.body, 200, { 'content-type': m.contentType });
  });
  return app;
}

async function jsonBody(req: Request): Promise<unknown> {
  try {
    return await req.json();
  } catch {
    throw new InvalidInputError('invalid_body', '(body): must be a JSON object');
  }
}

function previewId(raw: string): string {
  const r = PreviewIdSchema.safeParse(raw);
  if (!r.success)
    throw new InvalidInputError('invalid_preview_id', `previewId: ${r.error.issues[0]?.message}`);
  return r.data;
}
