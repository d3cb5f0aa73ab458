import { randomBytes } from 'node:crypto';
import { UnauthorizedError } from '@preview/tiers';
import { jwtVerify, SignJWT } from 'jose';
import { hs256Key } from './hmac-key.ts';

export type AccessKind = 'link' | 'cookie' | 'editor';

/**
 * Short-lived signed tokens (HS256 JWTs, `aud` = `preview-<kind>`, `sub` = user, `pid` = preview):
 * a `link` token rides in `previewUrl?token=` and is exchanged by the proxy for a longer `cookie`
 * token set HttpOnly on that preview's origin; an `editor` token (from `POST /v1/previews/:id/realtime`)
 * is what a Supabase Realtime editor shows the router's bridge in its hello, bound to its editor id
 * (`eid`) too. Each is bound to one preview id; one kind cannot be used as another.
 *
 * @example
 * const tokens = createAccessTokens({ secret });
 * const t = await tokens.sign({ previewId, userId, kind: 'link', ttlMs: 300_000 });
 * await tokens.verify(t, { previewId, kind: 'link' }); // { userId }
 */
export function createAccessTokens(options: { secret?: string | undefined }) {
  const key = hs256Key(options.secret ?? randomBytes(32).toString('hex'));
  const aud = (kind: AccessKind) => `preview-${kind}`;
  return {
    /** `ttlMs` in milliseconds; `editorId` binds the token to one editor (checked by `verify`). */
    async sign(o: {
      previewId: string;
      userId: string;
      kind: AccessKind;
      ttlMs: number;
      editorId?: string | undefined;
    }): Promise<string> {
      return await new SignJWT({ pid: o.previewId, ...(o.editorId !== undefined ? { eid: o.editorId } : {}) })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(o.userId)
        .setAudience(aud(o.kind))
        .setExpirationTime(Math.floor((Date.now() + o.ttlMs) / 1000))
        .sign(await key);
    },
    /**
     * @throws UnauthorizedError `invalid_preview_token` (bad signature, expired, another kind,
     * preview or editor)
     */
    async verify(
      token: string,
      o: { previewId: string; kind: AccessKind; editorId?: string | undefined },
    ): Promise<{ userId: string }> {
      try {
        const { payload } = await jwtVerify(token, await key, {
          audience: aud(o.kind),
          requiredClaims: ['exp', 'sub'],
        });
        if (payload['pid'] !== o.previewId) throw new Error('token is for another preview');
        if (o.editorId !== undefined && payload['eid'] !== o.editorId)
          throw new Error('token is for another editor');
        return { userId: payload.sub! };
      } catch (e) {
        throw new UnauthorizedError(
          'invalid_preview_token',
          `invalid preview access token: ${(e as Error).message}`,
        );
      }
    },
  };
}
export type AccessTokens = ReturnType<typeof createAccessTokens>;
