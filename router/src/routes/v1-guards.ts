import { getConnInfo } from '@hono/node-server/conninfo';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { CapacityError, InvalidInputError } from '@preview/tiers';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Authenticator } from '../auth/authenticate.ts';
import { type AuthEnv, authenticate } from '../auth/middleware.ts';
import type { RateLimiter } from '../infra/rate-limit.ts';
import type { Metrics } from '../metrics.ts';

/** What the `/v1/*` guards need. */
export interface V1GuardDeps {
  auth: Authenticator;
  rateLimiter: RateLimiter;
  metrics: Pick<Metrics, 'rateLimited'>;
  limits: {
    /** Requests per minute per user. */
    userPerMin: number;
    /** Requests per minute per client IP. */
    ipPerMin: number;
    /** Take the client IP from the first `X-Forwarded-For` entry. */
    trustProxy: boolean;
    /** Largest request body, bytes (413 `body_too_large`). */
    maxBodyBytes: number;
  };
}

/**
 * Puts the guards in front of every `/v1/*` route, in this order: the per-IP rate limit (and
 * `clientIp` on the context), the body size cap, authentication, the per-user rate limit.
 * @throws (per request) CapacityError `rate_limited` with `retryAfterMs`; InvalidInputError
 * `body_too_large`; UnauthorizedError from the authenticator.
 */
export function useV1Guards(app: OpenAPIHono<AuthEnv>, deps: V1GuardDeps): void {
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
}

/**
 * Takes one request from the `key`'s budget of `perMin` a minute.
 * @throws CapacityError `rate_limited` (with `retryAfterMs`) when the budget is spent.
 */
export async function limit(
  deps: Pick<V1GuardDeps, 'rateLimiter' | 'metrics'>,
  key: string,
  perMin: number,
  scope: string,
): Promise<void> {
  const d = await deps.rateLimiter.take(key, { limit: perMin, windowMs: 60_000 });
  if (!d.allowed) {
    deps.metrics.rateLimited.inc({ scope });
    throw new CapacityError('rate_limited', `rate limit exceeded (${perMin}/min per ${scope})`, {
      retryAfterMs: d.retryAfterMs,
    });
  }
}

/**
 * The client's IP: the first `X-Forwarded-For` entry when `trustProxy` (behind a proxy that sets it),
 * else the socket's remote address; `'local'` when there is no socket (`app.request()`).
 */
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
