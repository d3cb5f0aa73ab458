import { createHash, timingSafeEqual } from 'node:crypto';
import { getConnInfo } from '@hono/node-server/conninfo';
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import {
  CapacityError,
  ConflictError,
  FileBatch,
  InvalidInputError,
  NodeHeartbeat,
  NodeRegistered,
  NodeRegistration,
  TierUnavailableError,
  UnauthorizedError,
  zodToInvalidInput,
} from '@preview/tiers';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { AccessTokens } from './auth/access-token.ts';
import type { Authenticator } from './auth/authenticate.ts';
import { type AuthEnv, authenticate, requireNode, requireUser } from './auth/middleware.ts';
import { DEMO_EDITOR_HTML } from './demo/editor.ts';
import { assertUtf8Body } from './files-body.ts';
import { onError } from './http-errors.ts';
import type { RateLimiter } from './infra/rate-limit.ts';
import type { Metrics } from './metrics.ts';
import type { NodeRegistry } from './nodes.ts';
import type { PackageCache } from './package-cache/cache.ts';
import type { PreviewService } from './previews.ts';
import type { PreviewHostHandler } from './proxy/preview-proxy.ts';
import { registerPackageRoutes } from './routes/packages.ts';
import { registerPlacementRoute } from './routes/placement.ts';
import { type RuntimeHostOptions, registerRuntimeHost } from './routes/runtime-host.ts';
import {
  CreatePreviewBody,
  ErrorBody,
  FilesResult,
  IdParams,
  ListQuery,
  NodeFailedReport,
  PreviewList,
  PreviewView,
  RealtimeRequest,
  RealtimeSession,
} from './schemas.ts';
import { sseForPreview } from './sse.ts';
import type { Session } from './store/sessions.ts';

export interface AppDeps {
  pool: pg.Pool;
  /** The bundler runtime's package cache (`/__pkg/*`, `/v1/previews/:id/importmap`). */
  packages?: PackageCache | undefined;
  /** The bundler runtime's own origin (`bundler.<PREVIEW_DOMAIN>`), when assets are configured. */
  runtimeHost?: RuntimeHostOptions | undefined;
  log: Logger;
  previews: PreviewService;
  nodes: NodeRegistry;
  auth: Authenticator;
  rateLimiter: RateLimiter;
  metrics: Metrics;
  accessTokens: AccessTokens;
  limits: {
    userPerMin: number;
    ipPerMin: number;
    trustProxy: boolean;
    previewTokenTtlMs: number;
    /** Life of a Realtime editor token, ms. */
    editorTokenTtlMs: number;
    /** Largest request body under `/v1/*`, bytes (413 `body_too_large`). */
    maxBodyBytes: number;
  };
  /** `http://<id>.preview.localhost:8787` (embedded) or `https://<id>.<PREVIEW_DOMAIN>`. */
  previewOrigin: (previewId: string) => string;
  /** Handles requests whose Host is a preview origin (the proxy); `undefined` → not a preview host. */
  previewHost?: PreviewHostHandler;
  /** `METRICS_TOKEN`: `/metrics` answers only `Authorization: Bearer <it>`; unset → open. */
  metricsToken?: string | undefined;
  /** The Supabase Realtime bridges, when configured (read per request: built after the app). */
  realtime?: () => { ensure(previewId: string): Promise<unknown> } | undefined;
}

const IdempotencyKey = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, 'visible ASCII only');
const secured = [{ bearer: [] as string[] }];
const errors = {
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
};

/**
 * The router's HTTP application: API routes (OpenAPI at `/openapi.json`, reference at `/docs`),
 * health, metrics, and the preview-host proxy in front of everything.
 *
 * @example
 * const app = createApp(deps);
 * const res = await app.request('/v1/previews', { headers: { authorization: `Bearer ${jwt}` } });
 */
export function createApp(deps: AppDeps): OpenAPIHono<AuthEnv> {
  const { previews, metrics } = deps;
  const app = new OpenAPIHono<AuthEnv>({
    defaultHook: (result) => {
      if (!result.success)
        throw zodToInvalidInput(result.error as z.ZodError, {
          where: result.target === 'json' ? 'body' : result.target,
        });
    },
  });
  app.onError(onError(deps.log));
  app.notFound((c) =>
    c.json({ error: { code: 'not_found', message: `no route ${c.req.method} ${c.req.path}` } }, 404),
  );
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'Supabase JWT, service API key (pk_...), or node credential (pn_...)',
  });

  // Preview origins first: one Host check for every request (the upgrade path shares it).
  if (deps.previewHost) {
    const handler = deps.previewHost;
    app.use('*', async (c, next) => {
      const res = await handler.handle(c, clientIp(c, deps.limits.trustProxy));
      if (res) return res;
      await next();
    });
  }

  if (deps.runtimeHost) registerRuntimeHost(app, deps.runtimeHost);

  app.use('*', async (c, next) => {
    const start = performance.now();
    await next();
    const route = c.req.routePath || 'unmatched';
    metrics.httpRequests.inc({ method: c.req.method, route, status: String(c.res.status) });
    metrics.httpDuration.observe({ method: c.req.method, route }, (performance.now() - start) / 1000);
  });

  app.use('/v1/*', async (c, next) => {
    const ip = clientIp(c, deps.limits.trustProxy);
    c.set('clientIp', ip);
    await limit(deps, `ip:${ip}`, deps.limits.ipPerMin, 'ip');
    await next();
  });
  // Bodies are counted as they stream in: a Content-Length over the cap is refused before a byte is
  // read, a chunked body as soon as it passes the cap, so nothing larger is ever buffered.
  app.use(
    '/v1/*',
    bodyLimit({
      maxSize: deps.limits.maxBodyBytes,
      onError: () => {
        throw new InvalidInputError(
          'body_too_large',
          `body: larger than ${deps.limits.maxBodyBytes} bytes (rule max_body_bytes)`,
        );
      },
    }),
  );
  app.use('/v1/*', authenticate(deps.auth));
  app.use('/v1/*', async (c, next) => {
    const p = c.get('principal');
    if (p?.kind === 'user') await limit(deps, `user:${p.userId}`, deps.limits.userPerMin, 'user');
    await next();
  });

  const view = async (s: Session) => {
    let previewUrl: string | null = null;
    if (s.tier && s.tier !== 'browser' && !['ended', 'failed', 'stopping'].includes(s.state)) {
      const token = await deps.accessTokens.sign({
        previewId: s.id,
        userId: s.userId,
        kind: 'link',
        ttlMs: deps.limits.previewTokenTtlMs,
      });
      previewUrl = `${deps.previewOrigin(s.id)}/?token=${token}`;
    }
    return {
      id: s.id,
      state: s.state,
      template: s.template,
      tier: s.tier,
      placement: s.placement as Record<string, unknown> | null,
      classification: s.classification as Record<string, unknown>,
      reasons: s.reasons,
      previewUrl,
      error: s.error,
      lastSeq: s.lastSeq,
      createdAt: s.createdAt.toISOString(),
      updatedAt: s.updatedAt.toISOString(),
    };
  };

  // ---- previews -------------------------------------------------------------------------------
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
          description: 'Same Idempotency-Key: the existing preview',
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
        { files: body.files, template: body.template, client: body.client, serverOnly: body.serverOnly },
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
        {
          previews: await Promise.all(rows.map(view)),
          nextCursor: last
            ? Buffer.from(`${last.createdAt.toISOString()}|${last.id}`).toString('base64url')
            : null,
        },
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

  registerPlacementRoute(app, { previews, view });
  if (deps.packages) registerPackageRoutes(app, { cache: deps.packages, previews, view });

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
        200: { description: 'The topic', content: { 'application/json': { schema: RealtimeSession } } },
        409: {
          description: 'The preview has no server-side sandbox to sync to (browser tier, suspended, ended)',
          content: { 'application/json': { schema: ErrorBody } },
        },
        503: {
          description: 'Supabase Realtime is not configured on this router',
          content: { 'application/json': { schema: ErrorBody } },
        },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const id = c.req.valid('param').id;
      const s = await previews.get(user.userId, id);
      const bridges = deps.realtime?.();
      if (!bridges)
        throw new TierUnavailableError(
          'realtime_unavailable',
          'Supabase Realtime is not configured on this router (SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY)',
          { tier: 'realtime' },
        );
      if (['ended', 'failed', 'stopping'].includes(s.state))
        throw new ConflictError('preview_ended', `preview ${id} is ${s.state}`);
      if (!s.tier || s.tier === 'browser' || s.state === 'suspended')
        throw new ConflictError(
          'no_sync_channel',
          `preview ${id} has no server-side sandbox to sync to (tier ${s.tier ?? 'none'}, ${s.state})`,
        );
      await bridges.ensure(id);
      const editorId = c.req.valid('json')?.editorId;
      if (!editorId) return c.json({ topic: `preview:${id}` }, 200);
      const ttlMs = deps.limits.editorTokenTtlMs;
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
      path: '/v1/previews/{id}/events',
      summary: 'Server-sent events: state, status and log lines',
      description: 'EventSource may pass the token as `?access_token=`.',
      security: secured,
      request: { params: IdParams },
      responses: {
        200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: z.string() } } },
        ...errors,
      },
    }),
    async (c) => {
      const user = requireUser(c);
      const s = await previews.get(user.userId, c.req.valid('param').id);
      return sseForPreview(c, previews, s) as never;
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
      const body =
        typeof out === 'string'
          ? out
          : new ReadableStream<Uint8Array>({
              async start(ctrl) {
                try {
                  for await (const chunk of out)
                    ctrl.enqueue(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
                  ctrl.close();
                } catch (e) {
                  ctrl.error(e);
                }
              },
            });
      return new Response(body, {
        status: 200,
        headers: {
          'content-type': 'application/sql; charset=utf-8',
          'content-disposition': `attachment; filename="preview-${id}.sql"`,
        },
      }) as never;
    },
  );

  // ---- nodes ----------------------------------------------------------------------------------
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
      const sessions = (await previews.store.onNode(node.nodeId)).map((s) => s.id);
      return c.json({ sessions }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/nodes/previews/{id}/failed',
      summary: 'A pool agent reports that a preview’s sandbox stopped for good (e.g. OOM-killed)',
      description:
        'The session becomes `failed` with the reason at once (GET and the SSE `state` event), instead ' +
        'of at the next reconcile. Only the node the preview is on may report it; repeat-safe.',
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
      const s = await previews.failedOnNode(node.nodeId, c.req.valid('param').id, c.req.valid('json').reason);
      return c.json(await view(s), 200);
    },
  );

  // ---- system ---------------------------------------------------------------------------------
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', async (c) => {
    try {
      await deps.pool.query('SELECT 1');
      return c.json({ ok: true, postgres: 'up' });
    } catch (e) {
      return c.json({ ok: false, postgres: (e as Error).message }, 503);
    }
  });
  app.get('/metrics', async (c) => {
    if (deps.metricsToken !== undefined && !bearerMatches(c.req.header('authorization'), deps.metricsToken))
      throw new UnauthorizedError(
        'metrics_token_required',
        '/metrics: Authorization: Bearer <METRICS_TOKEN> required',
      );
    return c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType });
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'Preview router',
      version: '0.1.0',
      description: 'Live previews across browser, Docker and Fly tiers.',
    },
  });
  app.get('/docs', (c) => c.html(DOCS_HTML));
  app.get('/', (c) => c.html(DEMO_EDITOR_HTML));
  return app;
}

/** `Bearer <token>` compared in constant time (the header is attacker-controlled). */
function bearerMatches(header: string | undefined, token: string): boolean {
  const got = createHash('sha256')
    .update(header ?? '')
    .digest();
  const want = createHash('sha256').update(`Bearer ${token}`).digest();
  return timingSafeEqual(got, want);
}

async function limit(deps: AppDeps, key: string, perMin: number, scope: string): Promise<void> {
  const d = await deps.rateLimiter.take(key, { limit: perMin, windowMs: 60_000 });
  if (!d.allowed) {
    deps.metrics.rateLimited.inc({ scope });
    throw new CapacityError('rate_limited', `rate limit exceeded (${perMin}/min per ${scope})`, {
      retryAfterMs: d.retryAfterMs,
    });
  }
}

export function clientIp(c: Context, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = c.req.header('x-forwarded-for');
    if (xff) return xff.split(',')[0]!.trim();
  }
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'local'; // app.request() in tests: no socket
  }
}

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const createdAt = new Date(at ?? '');
  if (Number.isNaN(createdAt.getTime()) || !id || !/^[0-9a-f-]{36}$/.test(id))
    throw zodToInvalidInput(
      new z.ZodError([
        { code: 'custom', path: ['cursor'], message: 'not a cursor from this API', input: cursor },
      ]),
      { where: 'query' },
    );
  return { createdAt, id };
}

const DOCS_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>Preview router API</title>
<style>body{font:14px system-ui;margin:2rem;max-width:60rem}code{background:#eee;padding:0 .2em}.m{display:inline-block;width:4.5em;font-weight:600}</style></head>
<body><h1>Preview router API</h1><p>OpenAPI 3.1 document: <a href="/openapi.json">/openapi.json</a>. Auth: <code>Authorization: Bearer &lt;Supabase JWT | pk_… | pn_…&gt;</code>.</p><ul id="r"></ul>
<script>fetch('/openapi.json').then(r=>r.json()).then(d=>{const ul=document.getElementById('r');for(const[p,ops]of Object.entries(d.paths))for(const[m,op]of Object.entries(ops)){const li=document.createElement('li');li.innerHTML='<span class=m>'+m.toUpperCase()+'</span> <code></code> — ';li.querySelector('code').textContent=p;li.append(op.summary||'');ul.append(li)}})</script></body></html>`;
