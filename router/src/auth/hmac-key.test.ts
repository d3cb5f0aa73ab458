import { afterEach, describe, expect, it, vi } from 'vitest';
import { createAccessTokens } from './access-token.ts';
import { createJwtVerifier, signUserJwt } from './jwt.ts';

afterEach(() => vi.restoreAllMocks());

describe('HS256 keys are imported once', () => {
  it('signs and verifies many preview access tokens with one key import', async () => {
    const imports = vi.spyOn(crypto.subtle, 'importKey');
    const tokens = createAccessTokens({ secret: 's'.repeat(40) });
    const signed = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        tokens.sign({ previewId: `p${i}`, userId: 'u1', kind: 'link', ttlMs: 60_000 }),
      ),
    );
    for (const [i, t] of signed.entries())
      expect(await tokens.verify(t, { previewId: `p${i}`, kind: 'link' })).toEqual({ userId: 'u1' });
    await expect(tokens.verify(signed[0]!, { previewId: 'p1', kind: 'link' })).rejects.toThrow(
      /another preview/,
    );
    expect(imports).toHaveBeenCalledTimes(1);
  });

  it('verifies many user JWTs with one key import, and still refuses a wrong signature', async () => {
    const secret = 'x'.repeat(40);
    const userId = '7d5d3c2a-1f4e-4b8a-9c0d-2e3f4a5b6c7d';
    const jwts = await Promise.all(Array.from({ length: 10 }, () => signUserJwt({ secret, userId })));
    const forged = await signUserJwt({ secret: 'y'.repeat(40), userId });
    const imports = vi.spyOn(crypto.subtle, 'importKey');
    const verify = createJwtVerifier({ secret });
    for (const t of jwts) expect(await verify(t)).toBe(userId);
    await expect(verify(forged)).rejects.toThrow(/invalid token/);
    expect(imports).toHaveBeenCalledTimes(1);
  });
});
