import { ForbiddenError, UnauthorizedError } from '@preview/tiers';
import type { Context, MiddlewareHandler } from 'hono';
import type { Authenticator } from './authenticate.ts';
import type { Principal, UserPrincipal } from './principal.ts';

export type AuthEnv = { Variables: { principal: Principal | undefined; clientIp: string } };

/** Reads the bearer credential (or `?access_token=` for EventSource) and sets `principal`. */
export function authenticate(auth: Authenticator): MiddlewareHandler<AuthEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization');
    const q = header ? undefined : c.req.query('access_token');
    c.set('principal', q ? await auth.fromToken(q) : await auth.fromHeader(header));
    await next();
  };
}

export function requireUser(c: Context<AuthEnv>): UserPrincipal {
  const p = c.get('principal');
  if (!p) throw new UnauthorizedError('unauthenticated', 'missing Authorization: Bearer <token>');
  if (p.kind !== 'user')
    throw new ForbiddenError('wrong_principal', 'node credentials cannot use this route');
  return p;
}

export function requireNode(c: Context<AuthEnv>): { nodeId: string } {
  const p = c.get('principal');
  if (!p) throw new UnauthorizedError('unauthenticated', 'missing Authorization: Bearer <node credential>');
  if (p.kind !== 'node')
    throw new ForbiddenError('wrong_principal', 'only node credentials can use this route');
  return p;
}
