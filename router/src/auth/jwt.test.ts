import { afterEach, describe, expect, it, vi } from 'vitest';
import { createJwtVerifier, signUserJwt } from './jwt.ts';

const secret = 'k'.repeat(40);
const userId = '0b6f3c1e-8d2a-4f5b-9e7c-1a2b3c4d5e6f';

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('createJwtVerifier keeps verified tokens', () => {
  it('verifies a token once while it is cached, and refuses a forged one every time', async () => {
    const token = await signUserJwt({ secret, userId });
    const forged = await signUserJwt({ secret: 'f'.repeat(40), userId });
    const verify = createJwtVerifier({ secret });
    const signatures = vi.spyOn(crypto.subtle, 'verify');
    for (let i = 0; i < 5; i++) expect(await verify(token)).toBe(userId);
    expect(signatures).toHaveBeenCalledTimes(1);
    for (let i = 0; i < 2; i++) await expect(verify(forged)).rejects.toThrow(/invalid token/);
    expect(signatures).toHaveBeenCalledTimes(3);
  });

  it('does not answer from the cache after the token expired, nor after cacheTtlMs', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    const token = await signUserJwt({ secret, userId, ttlSeconds: 120 });
    const verify = createJwtVerifier({ secret, cacheTtlMs: 30_000 });
    const signatures = vi.spyOn(crypto.subtle, 'verify');
    expect(await verify(token)).toBe(userId);
    vi.setSystemTime(t0 + 31_000); // past cacheTtlMs: verified again (still valid)
    expect(await verify(token)).toBe(userId);
    expect(signatures).toHaveBeenCalledTimes(2);
    vi.setSystemTime(t0 + 121_000); // past exp: refused, though it was verified 90 s ago
    await expect(verify(token)).rejects.toThrow(/invalid token.*exp/);
  });

  it('keeps at most cacheSize tokens (the oldest goes); cacheSize 0 keeps none', async () => {
    const tokens = await Promise.all(
      [1, 2, 3].map((s) => signUserJwt({ secret, userId, ttlSeconds: 600 + s })),
    );
    const verify = createJwtVerifier({ secret, cacheSize: 2 });
    const signatures = vi.spyOn(crypto.subtle, 'verify');
    for (const t of tokens) await verify(t);
    await verify(tokens[2]!);
    expect(signatures).toHaveBeenCalledTimes(3); // the newest was kept
    await verify(tokens[0]!);
    expect(signatures).toHaveBeenCalledTimes(4); // the oldest was not
    const uncached = createJwtVerifier({ secret, cacheSize: 0 });
    await uncached(tokens[0]!);
    await uncached(tokens[0]!);
    expect(signatures).toHaveBeenCalledTimes(6);
  });
});
