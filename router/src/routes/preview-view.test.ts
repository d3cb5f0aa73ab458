import { afterEach, describe, expect, it, vi } from 'vitest';
import { createAccessTokens } from '../auth/access-token.ts';
import type { Session } from '../store/sessions.ts';
import { createPreviewView } from './preview-view.ts';

const at = new Date('2026-01-02T03:04:05.000Z');
const session = (over: Partial<Session>): Session => ({
  id: '0b6c3a0e-8f0e-4c1a-9a43-5c1f1d0b2e7a',
  userId: 'u1',
  template: 'vite-react',
  state: 'ready',
  tier: 'docker',
  placement: null,
  nodeId: null,
  classification: {},
  reasons: [],
  needsDatabase: false,
  projectId: null,
  databaseId: null,
  lastSeq: 3,
  error: null,
  lastEditAt: at,
  lastViewAt: at,
  createdAt: at,
  updatedAt: at,
  endedAt: null,
  ...over,
});

describe('preview view', () => {
  const tokens = createAccessTokens({ secret: 'test-secret' });
  const view = createPreviewView({
    accessTokens: tokens,
    previewOrigin: (id) => `http://${id}.preview.localhost:8787`,
    previewTokenTtlMs: 60_000,
  });

  it('links a running server-side preview with a link token for that preview and user', async () => {
    const s = session({});
    const v = await view(s);
    const url = new URL(v.previewUrl!);
    expect(url.origin).toBe(`http://${s.id}.preview.localhost:8787`);
    const token = url.searchParams.get('token')!;
    await expect(tokens.verify(token, { previewId: s.id, kind: 'link' })).resolves.toEqual({ userId: 'u1' });
    expect(v).toMatchObject({
      id: s.id,
      state: 'ready',
      tier: 'docker',
      lastSeq: 3,
      createdAt: '2026-01-02T03:04:05.000Z',
      updatedAt: '2026-01-02T03:04:05.000Z',
    });
  });

  it.each([
    ['the browser tier', { tier: 'browser' as const }],
    ['no tier yet', { tier: null }],
    ['ended', { state: 'ended' as const }],
    ['failed', { state: 'failed' as const }],
    ['stopping', { state: 'stopping' as const }],
  ])('has no previewUrl for %s', async (_, over) => {
    expect((await view(session(over))).previewUrl).toBeNull();
  });
});

/** A view whose token signer is spied on (60 s link tokens). */
const spiedView = () => {
  const tokens = createAccessTokens({ secret: 'test-secret' });
  const sign = vi.spyOn(tokens, 'sign');
  const view = createPreviewView({
    accessTokens: tokens,
    previewOrigin: (id) => `http://${id}.preview.localhost:8787`,
    previewTokenTtlMs: 60_000,
  });
  return { tokens, sign, view };
};

describe('preview view link tokens', () => {
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it('reuses the link token of a preview and user while half its life is left, then signs a new one', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.now();
    const { tokens, sign, view } = spiedView();
    const s = session({});
    const first = (await view(s)).previewUrl;
    vi.setSystemTime(t0 + 29_000);
    expect((await view(s)).previewUrl).toBe(first);
    expect(sign).toHaveBeenCalledTimes(1);
    // Another user's view of the same id, and another preview: their own tokens.
    const other = (await view(session({ userId: 'u2' }))).previewUrl!;
    const token = new URL(other).searchParams.get('token')!;
    await expect(tokens.verify(token, { previewId: s.id, kind: 'link' })).resolves.toEqual({ userId: 'u2' });
    expect((await view(session({ id: 'another' }))).previewUrl).not.toBe(first);
    expect(sign).toHaveBeenCalledTimes(3);
    // Past half its life: a new token, valid for the whole TTL from now.
    vi.setSystemTime(t0 + 31_000);
    const renewed = (await view(s)).previewUrl!;
    expect(renewed).not.toBe(first);
    vi.setSystemTime(t0 + 31_000 + 59_000);
    const t = new URL(renewed).searchParams.get('token')!;
    await expect(tokens.verify(t, { previewId: s.id, kind: 'link' })).resolves.toEqual({ userId: 'u1' });
  });

  it('forgets the token of a preview it shows ended: the next live view of that id signs again', async () => {
    const { sign, view } = spiedView();
    await view(session({}));
    await view(session({ state: 'ended' }));
    await view(session({}));
    expect(sign).toHaveBeenCalledTimes(2);
  });
});
