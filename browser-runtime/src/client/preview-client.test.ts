/**
 * PreviewClient's REST calls when the network fails under them: a repeat-safe call (GET, DELETE, an
 * idempotent create, a placement move, a resume) is sent again; any other call, an HTTP answer and
 * a timeout are not. `fetch` is a stub here: it stands for the network, answering or failing as
 * Chromium's and Node's fetch do (a network failure is a TypeError: "Failed to fetch", "fetch failed").
 */
import { NotFoundError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { PreviewClient } from './preview-client.ts';

const VIEW = {
  id: 'p1',
  state: 'ready',
  template: 'vite-react',
  tier: 'docker',
  placement: null,
  previewUrl: 'http://p1.preview.localhost/?token=t',
  error: null,
  lastSeq: 0,
};

/** A fetch that fails with `failures` network errors (Chromium's message), then answers `answer`. */
function flakyFetch(failures: number, answer: () => Response = () => Response.json(VIEW)) {
  const calls: { method: string; path: string; headers: Record<string, string> }[] = [];
  const fetch = async (url: URL | RequestInfo, init?: RequestInit) => {
    calls.push({
      method: init?.method ?? 'GET',
      path: new URL(String(url)).pathname,
      headers: init?.headers as Record<string, string>,
    });
    if (calls.length <= failures) throw new TypeError('Failed to fetch');
    return answer();
  };
  return { fetch: fetch as typeof globalThis.fetch, calls };
}

const client = (f: typeof fetch, networkRetries?: number) =>
  new PreviewClient({
    baseUrl: 'http://router.test',
    token: 'tok',
    fetch: f,
    ...(networkRetries !== undefined ? { networkRetries } : {}),
  });

describe('PreviewClient: network failures', () => {
  it.each([
    ['get', (c: PreviewClient) => c.get('p1'), 'GET', '/v1/previews/p1'],
    [
      'movePlacement',
      (c: PreviewClient) => c.movePlacement('p1', { tier: 'docker', reason: 'r' }),
      'POST',
      '/v1/previews/p1/placement',
    ],
    ['resume', (c: PreviewClient) => c.resume('p1'), 'POST', '/v1/previews/p1/resume'],
    ['stop', (c: PreviewClient) => c.stop('p1'), 'DELETE', '/v1/previews/p1'],
  ])('%s (repeat-safe) is sent again until it is answered', async (_, call, method, path) => {
    const net = flakyFetch(2);
    await call(client(net.fetch));
    expect(net.calls).toEqual([1, 2, 3].map(() => expect.objectContaining({ method, path })));
  });

  it('a create with an idempotency key is sent again with the same key; one without is not', async () => {
    const keyed = flakyFetch(1);
    const view = await client(keyed.fetch).create({ files: {} }, { idempotencyKey: 'k-1' });
    expect(view.id).toBe('p1');
    expect(keyed.calls.map((c) => c.headers['idempotency-key'])).toEqual(['k-1', 'k-1']);

    const bare = flakyFetch(1);
    await expect(client(bare.fetch).create({ files: {} })).rejects.toThrow(TypeError);
    expect(bare.calls).toHaveLength(1);
  });

  it('suspend (not repeat-safe: a second one finds the preview suspended) fails at the first network error', async () => {
    const net = flakyFetch(1);
    await expect(client(net.fetch).suspend('p1')).rejects.toThrow('Failed to fetch');
    expect(net.calls).toHaveLength(1);
  });

  it('an HTTP answer is never sent again, an error status included', async () => {
    const net = flakyFetch(0, () =>
      Response.json({ error: { code: 'not_found', message: 'no' } }, { status: 404 }),
    );
    await expect(client(net.fetch).get('p1')).rejects.toBeInstanceOf(NotFoundError);
    expect(net.calls).toHaveLength(1);
  });

  it('gives up after networkRetries, with the network error', async () => {
    const net = flakyFetch(10);
    await expect(client(net.fetch, 2).get('p1')).rejects.toThrow('Failed to fetch');
    expect(net.calls).toHaveLength(3);
    const none = flakyFetch(10);
    await expect(client(none.fetch, 0).get('p1')).rejects.toThrow('Failed to fetch');
    expect(none.calls).toHaveLength(1);
  });

  it("a caller's abort stops the retries", async () => {
    const net = flakyFetch(10);
    const ac = new AbortController();
    const pending = client(net.fetch).get('p1', { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('closed')), 50);
    await expect(pending).rejects.toThrow('closed');
    expect(net.calls).toHaveLength(1);
  });
});
