import { describe, expect, it } from 'vitest';
import { createAccessTokens } from '../auth/access-token.ts';
import { isOurCredential } from './our-credential.ts';

describe('isOurCredential', () => {
  const tokens = createAccessTokens({ secret: 'test-secret' });
  const sign = (kind: 'link' | 'cookie' | 'editor') =>
    tokens.sign({ previewId: 'p', userId: 'u', kind, ttlMs: 60_000 });

  it('knows API keys, node credentials and preview link / cookie tokens', async () => {
    expect(isOurCredential('pk_abc')).toBe(true);
    expect(isOurCredential('pn_abc')).toBe(true);
    expect(isOurCredential(await sign('link'))).toBe(true);
    expect(isOurCredential(await sign('cookie'))).toBe(true);
  });

  it('leaves the app’s own tokens alone: other JWTs, opaque tokens, garbage', async () => {
    expect(isOurCredential(await sign('editor'))).toBe(false);
    const other = [
      'x',
      Buffer.from(JSON.stringify({ aud: 'authenticated' })).toString('base64url'),
      'y',
    ].join('.');
    expect(isOurCredential(other)).toBe(false);
    expect(isOurCredential('sk_live_123')).toBe(false);
    expect(isOurCredential('a.%%%.b')).toBe(false);
  });
});
