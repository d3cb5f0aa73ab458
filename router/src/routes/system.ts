import { createHash, timingSafeEqual } from 'node:crypto';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { UnauthorizedError } from '@preview/tiers';
import type pg from 'pg';
import type { AuthEnv } from '../auth/middleware.ts';
import type { Metrics } from '../metrics.ts';
import { createRouteGroup } from './route-group.ts';

/** What the system routes need. */
export interface SystemRoutesDeps {
  pool: Pick<pg.Pool, 'query'>;
  metrics: Pick<Metrics, 'registry'>;
  /** `METRICS_TOKEN`: `/metrics` answers only `Authorization: Bearer <it>`; unset → open. */
  metricsToken?: string | undefined;
}

/**
 * `/healthz` (the process answers), `/readyz` (Postgres answers `SELECT 1`, else 503 with the error)
 * and `/metrics` (Prometheus text format).
 */
export function systemRoutes(deps: SystemRoutesDeps): OpenAPIHono<AuthEnv> {
  const app = createRouteGroup();
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
    const { registry } = deps.metrics;
    return c.text(await registry.metrics(), 200, { 'content-type': registry.contentType });
  });
  return app;
}

/** `Bearer <token>` compared in constant time (the header is attacker-controlled). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const got = createHash('sha256')
    .update(header ?? '')
    .digest();
  const want = createHash('sha256').update(`Bearer ${token}`).digest();
  return timingSafeEqual(got, want);
}
