import { UnauthorizedError } from '@preview/tiers';
import { createRemoteJWKSet, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import { hs256Key } from './hmac-key.ts';

const Sub = z.uuid();

export interface JwtVerifierOptions {
  /** HS256 secret (Supabase's legacy JWT secret). */
  secret?: string;
  /** JWKS URL (Supabase's asymmetric signing keys). */
  jwksUrl?: string;
  audience?: string;
  /**
   * Verified tokens kept (each until its `exp`, at most `cacheTtlMs` after it was verified), so a
   * client's every request does not verify the same signature again (a WebCrypto job each, a
   * threadpool round trip that a loaded machine makes slow). 0 verifies every time.
   * @default 10000
   */
  cacheSize?: number;
  /**
   * Longest a verified token is taken from the cache, ms: bounds how long a token signed by a key
   * since removed from the JWKS is still accepted. @default 60000
   */
  cacheTtlMs?: number;
}

/**
 * Verifies Supabase-compatible access tokens: signature (HS256 secret or JWKS), `exp`, `aud`
 * (`authenticated`) and a uuid `sub`. Returns the user id. A token verified before is answered from
 * a bounded cache until it expires (see `cacheSize`, `cacheTtlMs`); a refused token is not kept.
 *
 * @example
 * const verify = createJwtVerifier({ secret: process.env.SUPABASE_JWT_SECRET });
 * const userId = await verify(token);
 */
export function createJwtVerifier(options: JwtVerifierOptions): (token: string) => Promise<string> {
  if (!options.secret && !options.jwksUrl)
    throw new TypeError('createJwtVerifier: options.secret or options.jwksUrl is required');
  const audience = options.audience ?? 'authenticated';
  const jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl)) : undefined;
  const secret = jwks ? undefined : hs256Key(options.secret as string);
  const cacheSize = options.cacheSize ?? 10_000;
  const cacheTtlMs = options.cacheTtlMs ?? 60_000;
  /** token → its user and until when (epoch ms) it is taken from here; oldest first. */
  const verified = new Map<string, { sub: string; until: number }>();
  return async (token) => {
    const hit = verified.get(token);
    if (hit) {
      if (Date.now() < hit.until) return hit.sub;
      verified.delete(token);
    }
    let payload: JWTPayload;
    try {
      // jose checks exp/nbf itself; `requiredClaims` makes a token without exp invalid.
      ({ payload } = await jwtVerify(token, (jwks ?? (await secret)) as Parameters<typeof jwtVerify>[1], {
        audience,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (e) {
      throw new UnauthorizedError('invalid_token', `invalid token: ${(e as Error).message}`);
    }
    const sub = Sub.safeParse(payload.sub);
    if (!sub.success) throw new UnauthorizedError('invalid_token', 'invalid token: sub must be a uuid');
    if (cacheSize > 0) {
      if (verified.size >= cacheSize) verified.delete(verified.keys().next().value as string);
      verified.set(token, { sub: sub.data, until: Math.min(payload.exp! * 1000, Date.now() + cacheTtlMs) });
    }
    return sub.data;
  };
}

/** Signs a Supabase-shaped HS256 access token (embedded mode's local token, tests). */
export async function signUserJwt(options: {
  secret: string;
  userId: string;
  ttlSeconds?: number;
  audience?: string;
}): Promise<string> {
  return await new SignJWT({ role: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(options.userId)
    .setAudience(options.audience ?? 'authenticated')
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (options.ttlSeconds ?? 3600))
    .sign(new TextEncoder().encode(options.secret));
}
