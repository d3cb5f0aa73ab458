import { randomBytes } from 'node:crypto';
import { UnauthorizedError } from '@preview/tiers';
import { jwtVerify, SignJWT } from 'jose';

export type AccessKind = 'link' | 'cookie';

/**
 * Short-lived signed tokens for preview origins: a `link` token rides in `previewUrl?token=` and is
 * exchanged by the proxy for a longer `cookie` token set HttpOnly on that preview's origin. Both
 * are bound to one preview id; one cannot be used as the other.
 *
 * @example
 * const tokens = createAccessTokens({ secret });
 * const t = await tokens.sign({ previewId, userId, kind: 'link', ttlMs: 300_000 });
 * await tokens.verify(t, { previewId, kind: 'link' }); // { userId }
 */
export function createAccessTokens(options: { secret?: string | undefined }) {
  const key = new TextEncoder().encode(options.secret ?? randomBytes(32).toString('hex'));
  const aud = (kind: AccessKind) => `preview-${kind}`;
  return {
    async sign(o: { previewId: string; userId: string; kind: AccessKind; ttlMs: number }): Promise<string> {
      return await new SignJWT({ pid: o.previewId })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(o.userId)
        .setAudience(aud(o.kind))
        .setExpirationTime(Math.floor((Date.now() + o.ttlMs) / 1000))
        .sign(key);
    },
    async verify(token: string, o: { previewId: string; kind: AccessKind }): Promise<{ userId: string }> {
      try {
        const { payload } = await jwtVerify(token, key, {
          audience: aud(o.kind),
          requiredClaims: ['exp', 'sub'],
        });
        if (payload['pid'] !== o.previewId) throw new Error('token is for another preview');
        return { userId: payload.sub! };
      } catch (e) {
        throw new UnauthorizedError(`invalid preview access token: ${(e as Error).message}`, {
          code: 'invalid_preview_token',
        });
      }
    },
  };
}
export type AccessTokens = ReturnType<typeof createAccessTokens>;
