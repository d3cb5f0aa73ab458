import { TimeoutError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { createAccessTokens } from '../auth/access-token.ts';
import { createMetrics } from '../metrics.ts';
import type { Session } from '../store/sessions.ts';
import { PreviewAccess, type PreviewAccessContext } from './preview-access.ts';
import type { Route } from './routing-cache.ts';

const route = (state: Session['state'], userId = 'u1'): Route =>
  ({ session: { id: 'p1', userId, state } as Session, upstream: undefined }) as Route;

function setup(over: Partial<PreviewAccessContext> = {}) {
  const tokens = createAccessTokens({ secret: 'test-secret' });
  const calls: string[] = [];
  let current: Route | undefined = route('ready');
  const ctx: PreviewAccessContext = {
    routes: {
      cookieUser: async (_id, token) =>
        (await tokens.verify(token, { previewId: 'p1', kind: 'cookie' })).userId,
      route: async () => current,
      invalidate: (id) => void calls.push(`invalidate ${id}`),
    },
    accessTokens: tokens,
    previews: {
      resumeSession: async (s) => {
        calls.push(`resume ${s.id}`);
        return s;
      },
      waitReady: async (id) => {
        calls.push(`wait ${id}`);
        return {} as Session;
      },
      watchReadiness: (id) => void calls.push(`watch ${id}`),
    },
    metrics: createMetrics(),
    cookieTtlMs: 3_600_000,
    wakeWaitMs: 1000,
    secureContext: true,
    ...over,
  };
  return {
    tokens,
    calls,
    access: new PreviewAccess(ctx),
    setRoute: (r: Route | undefined) => {
      current = r;
    },
  };
}

describe('PreviewAccess', () => {
  it('exchanges a link token for the origin cookie and redirects to the URL without it', async () => {
    const { tokens, access } = setup();
    const link = await tokens.sign({ previewId: 'p1', userId: 'u1', kind: 'link', ttlMs: 60_000 });
    const res = await access.exchange('p1', new URL(`http://x/a/b?x=1&token=${link}`));
    expect(res?.status).toBe(302);
    expect(res?.headers.get('location')).toBe('/a/b?x=1');
    const cookie = res?.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/Max-Age=3600/);
    const value = /=([^;]+)/.exec(cookie)?.[1] ?? '';
    await expect(tokens.verify(value, { previewId: 'p1', kind: 'cookie' })).resolves.toEqual({
      userId: 'u1',
    });
  });

  it('does not exchange a missing token, another preview’s, or another kind', async () => {
    const { tokens, access } = setup();
    const other = await tokens.sign({ previewId: 'p2', userId: 'u1', kind: 'link', ttlMs: 60_000 });
    const cookie = await tokens.sign({ previewId: 'p1', userId: 'u1', kind: 'cookie', ttlMs: 60_000 });
    expect(await access.exchange('p1', new URL('http://x/'))).toBeUndefined();
    expect(await access.exchange('p1', new URL(`http://x/?token=${other}`))).toBeUndefined();
    expect(await access.exchange('p1', new URL(`http://x/?token=${cookie}`))).toBeUndefined();
  });

  it('admits the cookie’s holder to their own preview only', async () => {
    const { tokens, access, setRoute } = setup();
    const cookie = await tokens.sign({ previewId: 'p1', userId: 'u1', kind: 'cookie', ttlMs: 60_000 });
    await expect(access.authorize('p1', undefined)).rejects.toThrow(/no preview access cookie/);
    expect((await access.authorize('p1', `__preview_access=${cookie}`))?.session.id).toBe('p1');
    setRoute(route('ready', 'u2'));
    expect(await access.authorize('p1', `__preview_access=${cookie}`)).toBeUndefined();
  });

  it('wakes a suspended preview and returns its fresh route; watches a starting one', async () => {
    const { access, calls } = setup();
    expect((await access.wake(route('suspended'), 'p1'))?.session.state).toBe('ready');
    expect(calls).toEqual(['resume p1', 'wait p1', 'invalidate p1']);
    calls.length = 0;
    await access.wake(route('starting'), 'p1');
    expect(calls).toEqual(['watch p1']);
  });

  it('passes on the timeout of a preview that does not wake in time', async () => {
    const { access } = setup({
      previews: {
        resumeSession: async (s) => s,
        waitReady: async () => {
          throw new TimeoutError('timeout', 'not ready');
        },
        watchReadiness: () => {},
      },
    });
    await expect(access.wake(route('suspended'), 'p1')).rejects.toThrow(TimeoutError);
  });
});
