import type { OpenAPIHono } from '@hono/zod-openapi';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { AccessTokens } from './auth/access-token.ts';
import type { Authenticator } from './auth/authenticate.ts';
import type { AuthEnv } from './auth/middleware.ts';
import type { DependencyEndpoints } from './dependency-errors.ts';
import { type EditorBuild, registerEditorRoutes } from './editor-assets.ts';
import { TEMPLATE_SOURCES } from './embedded-agent.ts';
import { onError } from './http-errors.ts';
import type { RateLimiter } from './infra/rate-limit.ts';
import type { Metrics } from './metrics.ts';
import type { NodeRegistry } from './nodes.ts';
import type { PackageCache } from './package-cache/cache.ts';
import type { PreviewService } from './previews.ts';
import type { ProjectDatabaseService } from './project-database.ts';
import type { PreviewHostHandler } from './proxy/preview-proxy.ts';
import { nodeRoutes } from './routes/nodes.ts';
import { registerPackageRoutes } from './routes/packages.ts';
import { registerPlacementRoute } from './routes/placement.ts';
import { createPreviewView } from './routes/preview-view.ts';
import { previewContentRoutes, previewLifecycleRoutes } from './routes/previews.ts';
import { projectDatabaseRoutes } from './routes/project-database.ts';
import { realtimeRoutes } from './routes/realtime.ts';
import { createRouteGroup } from './routes/route-group.ts';
import { type RuntimeHostOptions, registerRuntimeHost } from './routes/runtime-host.ts';
import { systemRoutes } from './routes/system.ts';
import { templateRoutes } from './routes/templates.ts';
import { clientIp, useV1Guards } from './routes/v1-guards.ts';

export { clientIp };

export interface AppDeps {
  pool: pg.Pool;
  /**
   * Where the router's Postgres and Redis listen (`dependencyEndpoints(pool, redis)`): a socket error
   * naming one of them answers 503 `unavailable`. Errors node-postgres and ioredis raise themselves
   * for a lost connection are recognised without it.
   */
  dependencies?: DependencyEndpoints | undefined;
  /** The bundler runtime's package cache (`/__pkg/*`, `/v1/previews/:id/importmap`). */
  packages?: PackageCache | undefined;
  /** The bundler runtime's own origin (`bundler.<PREVIEW_DOMAIN>`), when assets are configured. */
  runtimeHost?: RuntimeHostOptions | undefined;
  log: Logger;
  previews: PreviewService;
  /** Deploy and seed of a project's database (`/v1/projects/:projectId/database/*`). */
  projectDatabases: ProjectDatabaseService;
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
  /** The templates' starter sources (`GET /v1/templates`). @default the repo's `templates/` */
  templatesDir?: string;
  /** The built editor page served at `/` and `/assets/*` (called per request; settle it once). */
  editor: () => Promise<EditorBuild>;
  /** The Supabase Realtime bridges, when configured (read per request: built after the app). */
  realtime?: () => { ensure(previewId: string): Promise<unknown> } | undefined;
}

/**
 * The router's HTTP application: API routes (OpenAPI at `/openapi.json`, reference at `/docs`),
 * health, metrics, and the preview-host proxy in front of everything. The route groups live in
 * `routes/*.ts`, each a Hono sub-app registered with `app.route('/', group)`.
 *
 * @example
 * const app = createApp(deps);
 * const res = await app.request('/v1/previews', { headers: { authorization: `Bearer ${jwt}` } });
 */
export function createApp(deps: AppDeps): OpenAPIHono<AuthEnv> {
  const { previews, metrics } = deps;
  const app = createRouteGroup();
  app.onError(
    onError(deps.log, {
      counted: (code, status) => deps.metrics.apiErrors.inc({ code, status: String(status) }),
      dependencies: deps.dependencies,
    }),
  );
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
  useV1Guards(app, deps);

  const view = createPreviewView({
    accessTokens: deps.accessTokens,
    previewOrigin: deps.previewOrigin,
    previewTokenTtlMs: deps.limits.previewTokenTtlMs,
  });
  app.route('/', previewLifecycleRoutes({ previews, view }));
  registerPlacementRoute(app, { previews, view });
  if (deps.packages) registerPackageRoutes(app, { cache: deps.packages, previews, view });
  app.route(
    '/',
    realtimeRoutes({
      previews,
      accessTokens: deps.accessTokens,
      editorTokenTtlMs: deps.limits.editorTokenTtlMs,
      realtime: deps.realtime,
    }),
  );
  app.route('/', previewContentRoutes({ previews }));
  app.route('/', templateRoutes({ dir: deps.templatesDir ?? TEMPLATE_SOURCES }));
  app.route('/', projectDatabaseRoutes({ projectDatabases: deps.projectDatabases }));
  app.route('/', nodeRoutes({ nodes: deps.nodes, previews, view }));
  app.route('/', systemRoutes(deps));

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'Preview router',
      version: '0.1.0',
      description: 'Live previews across browser, Docker and Fly tiers.',
    },
  });
  app.get('/docs', (c) => c.html(DOCS_HTML));
  registerEditorRoutes(app, deps.editor);
  return app;
}

const DOCS_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>Preview router API</title>
<style>body{font:14px system-ui;margin:2rem;max-width:60rem}code{background:#eee;padding:0 .2em}.m{display:inline-block;width:4.5em;font-weight:600}</style></head>
<body><h1>Preview router API</h1><p>OpenAPI 3.1 document: <a href="/openapi.json">/openapi.json</a>. Auth: <code>Authorization: Bearer &lt;Supabase JWT | pk_… | pn_…&gt;</code>.</p><ul id="r"></ul>
<script>fetch('/openapi.json').then(r=>r.json()).then(d=>{const ul=document.getElementById('r');for(const[p,ops]of Object.entries(d.paths))for(const[m,op]of Object.entries(ops)){const li=document.createElement('li');li.innerHTML='<span class=m>'+m.toUpperCase()+'</span> <code></code> — ';li.querySelector('code').textContent=p;li.append(op.summary||'');ul.append(li)}})</script></body></html>`;
