import { Hono } from 'hono';
import type pg from 'pg';

export interface AppDeps {
  pool: pg.Pool;
}

/**
 * The router's HTTP application. Routes are added by feature modules; this file wires them.
 *
 * @example
 * const app = createApp({ pool });
 * const res = await app.request('/readyz');
 */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', async (c) => {
    try {
      await deps.pool.query('SELECT 1');
      return c.json({ ok: true, postgres: 'up' });
    } catch (e) {
      return c.json({ ok: false, postgres: (e as Error).message }, 503);
    }
  });
  return app;
}
