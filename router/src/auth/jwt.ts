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
}

/**
 * Verifies Supabase-compatible access tokens: signature (HS256 secret or JWKS), `exp`, `aud`
 * (`authenticated`) and a uuid `sub`. Returns the user id.
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
  return async (token) => {
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
