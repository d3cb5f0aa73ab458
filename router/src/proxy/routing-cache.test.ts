import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createAccessTokens } from '../auth/access-token.ts';
import { EventHub } from '../events.ts';
import { createMemoryPubSub } from '../infra/pubsub.ts';
import type { Session, SessionStore } from '../store/sessions.ts';
import { isDocumentRequest } from './activity.ts';
import { createRoutingCache } from './routing-cache.ts';

/** Sessions in a Map, counting reads: the cache's only question to the store. */
function sessions() {
  const rows = new Map<string, Session>();
  let reads = 0;
  return {
    rows,
    get reads() {
      return reads;
    },
    store: {
      get: async (id: string) => {
        reads++;
        return rows.get(id);
      },
    } as Pick<SessionStore, 'get'>,
  };
}

const docker = (id: string, nodeId: string, upstream: string) =>
  ({
    id,
    userId: 'u1',
    state: 'ready',
    tier: 'docker',
    placement: { tier: 'docker', previewId: id, nodeId, containerId: 'c', upstream },
  }) as unknown as Session;

function setup(now = { t: 0 }) {
  const s = sessions();
  const pubsub = createMemoryPubSub();
  // Only subscribe/broadcast are used: no store behind the hub.
  const events = new EventHub(undefined as unknown as SessionStore, pubsub);
  const tokens = createAccessTokens({ secret: 'x'.repeat(32) });
  let verifies = 0;
  const accessTokens: typeof tokens = {
    sign: tokens.sign,
    verify: (t, o) => {
      verifies++;
      return tokens.verify(t, o);
    },
  };
  let tokenReads = 0;
  const cache = createRoutingCache({
    store: s.store,
    events,
    accessTokens,
    agentToken: async () => {
      tokenReads++;
      return 'node-token';
    },
    now: () => now.t,
  });
  return { s, events, accessTokens, cache, now, tokenReads: () => tokenReads, verifies: () => verifies };
}

describe('routing cache', () => {
  it('answers from memory; a state event of the preview drops it; the TTL re-reads it', async () => {
    const { s, events, cache, now, tokenReads } = setup();
    const id = randomUUID();
    s.rows.set(id, docker(id, 'n1', 'http://agent/v1/previews/x/http'));
    const first = await cache.route(id);
    expect(first?.upstream).toEqual({
      origin: 'http://agent/v1/previews/x/http',
      headers: { 'x-agent-token': 'node-token' },
    });
    for (let i = 0; i < 10; i++) await cache.route(id);
    expect(s.reads).toBe(1);
    expect(tokenReads()).toBe(1);
    // Another replica moved the preview: its state event reaches every replica.
    s.rows.set(id, { ...docker(id, 'n2', 'http://other/up'), state: 'suspended' } as Session);
    await events.broadcast(id, { type: 'state', state: 'suspended', at: 1 });
    expect((await cache.route(id))?.session.state).toBe('suspended');
    expect(s.reads).toBe(2);
    // A status or log event does not drop the route.
    await events.broadcast(id, { type: 'log', lines: ['x'], at: 2 });
    await cache.route(id);
    expect(s.reads).toBe(2);
    now.t += 5_001;
    await cache.route(id);
    expect(s.reads).toBe(3);
    cache.close();
  });

  it('past its TTL a route answers from memory at once and is read again behind it', async () => {
    const { s, cache, now } = setup();
    const id = randomUUID();
    s.rows.set(id, docker(id, 'n1', 'http://agent-1/up'));
    await cache.route(id);
    // Changed without an event reaching this replica (the TTL is what heals that).
    s.rows.set(id, docker(id, 'n2', 'http://agent-2/up'));
    now.t += 5_001;
    expect((await cache.route(id))?.upstream?.origin).toBe('http://agent-1/up');
    expect(s.reads).toBe(2);
    // Requests while the read runs start no other one.
    await cache.route(id);
    expect(s.reads).toBe(2);
    await new Promise((r) => setImmediate(r));
    expect((await cache.route(id))?.upstream?.origin).toBe('http://agent-2/up');
    expect(s.reads).toBe(2);
    // Much older than that (past staleMs), it is read before the answer.
    s.rows.set(id, docker(id, 'n3', 'http://agent-3/up'));
    now.t += 30_001;
    expect((await cache.route(id))?.upstream?.origin).toBe('http://agent-3/up');
    cache.close();
  });

  it('a state event during a read behind the route wins: the preview is read again, not answered from before', async () => {
    const { s, events, cache, now } = setup();
    const id = randomUUID();
    s.rows.set(id, docker(id, 'n1', 'http://agent-1/up'));
    await cache.route(id);
    // The background read sees the row as it was before the preview was suspended.
    let release: () => void = () => {};
    const get = s.store.get;
    s.store.get = async (x: string) => {
      const row = await get(x);
      await new Promise<void>((r) => (release = r));
      return row;
    };
    now.t += 5_001;
    const during = cache.route(id);
    s.store.get = get;
    s.rows.set(id, { ...docker(id, 'n1', 'http://agent-1/up'), state: 'suspended' } as Session);
    await events.broadcast(id, { type: 'state', state: 'suspended', at: 1 });
    release();
    await during;
    await new Promise((r) => setImmediate(r));
    expect((await cache.route(id))?.session.state).toBe('suspended');
    expect((await cache.route(id))?.upstream).toBeUndefined();
    cache.close();
  });

  it('an agent in this process: straight to the sandbox, no agent credential', async () => {
    const { s, cache } = setup();
    const id = randomUUID();
    s.rows.set(id, docker(id, 'local-node', 'http://agent/v1/previews/x/http'));
    cache.setLocalAgent({
      nodeId: 'local-node',
      upstream: (p) => (p === id ? 'http://127.0.0.1:32768' : undefined),
    });
    expect((await cache.route(id))?.upstream).toEqual({ origin: 'http://127.0.0.1:32768', headers: {} });
    const other = randomUUID();
    s.rows.set(other, docker(other, 'remote-node', 'http://remote/up'));
    expect((await cache.route(other))?.upstream?.origin).toBe('http://remote/up');
    cache.close();
  });

  it('an access cookie is verified once and kept until its exp; a bad one throws', async () => {
    const { cache, accessTokens, now, verifies } = setup({ t: Date.now() });
    const id = randomUUID();
    const token = await accessTokens.sign({ previewId: id, userId: 'u1', kind: 'cookie', ttlMs: 60_000 });
    expect(await cache.cookieUser(id, token)).toBe('u1');
    expect(await cache.cookieUser(id, token)).toBe('u1');
    expect(verifies()).toBe(1);
    await expect(cache.cookieUser(randomUUID(), token)).rejects.toThrow(/another preview/);
    await expect(cache.cookieUser(id, 'not-a-token')).rejects.toThrow(/invalid preview access token/);
    // Past its exp the cached entry is not used: the token is verified again.
    now.t += 61_000;
    await cache.cookieUser(id, token);
    expect(verifies()).toBe(4);
    cache.close();
  });
});

describe('what counts as a page view', () => {
  const req = (headers: Record<string, string>, url = '/', method = 'GET') => ({ headers, url, method });
  it('a navigation of a page or an iframe; not fetches, assets, probes or other methods', () => {
    expect(isDocumentRequest(req({ 'sec-fetch-dest': 'document' }))).toBe(true);
    expect(isDocumentRequest(req({ 'sec-fetch-dest': 'iframe' }))).toBe(true);
    expect(isDocumentRequest(req({ accept: 'text/html' }))).toBe(true);
    expect(isDocumentRequest(req({ 'sec-fetch-dest': 'empty', accept: 'text/html' }))).toBe(false);
    expect(isDocumentRequest(req({ 'sec-fetch-dest': 'script' }))).toBe(false);
    expect(isDocumentRequest(req({ 'sec-fetch-dest': 'document' }, '/__preview/health'))).toBe(false);
    expect(isDocumentRequest(req({ 'sec-fetch-dest': 'document' }, '/', 'POST'))).toBe(false);
  });
});
