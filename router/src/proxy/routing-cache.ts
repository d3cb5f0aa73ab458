import type { Placement } from '@preview/tiers';
import type { AccessTokens } from '../auth/access-token.ts';
import type { EventHub } from '../events.ts';
import type { Session, SessionStore } from '../store/sessions.ts';

/** Where a placement's HTTP traffic goes, and the headers that route it there. */
export function upstreamOf(
  p: Placement | null,
): { origin: string; headers: Record<string, string> } | undefined {
  if (!p) return undefined;
  switch (p.tier) {
    case 'docker':
      return { origin: p.upstream, headers: {} };
    case 'fly':
      return { origin: p.upstream, headers: { 'fly-force-instance-id': p.instanceId } };
    case 'browser':
      return undefined;
  }
}

/** An agent in this process: its node id and the sandbox address of a preview it runs. */
export interface LocalAgent {
  nodeId: string;
  /** `http://127.0.0.1:<port>` of the preview's daemon, or `undefined` when this agent does not run it. */
  upstream(previewId: string): string | undefined;
}

/** A preview's route: its session and, once it is ready on a server tier, where to send requests. */
export interface Route {
  session: Session;
  /** Origin and routing headers (the agent credential, Fly's instance id); `undefined` before ready. */
  upstream: { origin: string; headers: Record<string, string> } | undefined;
}

export interface RoutingCacheOptions {
  store: Pick<SessionStore, 'get'>;
  events: Pick<EventHub, 'subscribe'>;
  accessTokens: AccessTokens;
  /** The credential a docker node's agent accepts (`x-agent-token`). */
  agentToken?: (nodeId: string) => Promise<string | undefined>;
  /** A route is read again after this long even without a state event (a missed event heals). @default 5000 */
  ttlMs?: number;
  /**
   * A route past `ttlMs` but younger than this answers at once while it is read again in the
   * background (the request that finds it stale does not wait for the store); older, it is read
   * first. @default 30000
   */
  staleMs?: number;
  /** Most previews and access cookies kept. @default 10000 */
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  route: Promise<Route | undefined>;
  at: number;
  /** The read succeeded: the entry may answer while it is read again. */
  settled?: boolean;
  /** A background re-read runs. */
  refreshing?: boolean;
  unsubscribe?: Promise<() => Promise<void>>;
}

/**
 * Per-preview routing in memory: the session, its upstream and the agent credential, so a proxied
 * request runs no query. An entry is dropped on any `state` event of its preview (every replica
 * gets them over the shared pub/sub), and read again after `ttlMs` at the latest: in the background
 * while it is younger than `staleMs` (the request that finds it stale is answered from memory, so an
 * edit's module fetch never waits for Postgres), else before answering. Verified access cookies are
 * kept until their own `exp`.
 *
 * @example
 * const routes = createRoutingCache({ store, events, accessTokens });
 * const r = await routes.route(previewId); // { session, upstream }
 */
export function createRoutingCache(o: RoutingCacheOptions) {
  const ttlMs = o.ttlMs ?? 5_000;
  const staleMs = Math.max(ttlMs, o.staleMs ?? 30_000);
  const max = o.maxEntries ?? 10_000;
  const now = o.now ?? Date.now;
  const routes = new Map<string, Entry>();
  const cookies = new Map<string, { userId: string; expMs: number }>();
  const nodeTokens = new Map<string, { token: Promise<string | undefined>; at: number }>();
  let local: LocalAgent | undefined;

  const drop = (id: string) => {
    const e = routes.get(id);
    if (!e) return;
    routes.delete(id);
    void e.unsubscribe?.then((off) => off()).catch(() => {});
  };
  const evictOldest = <K, V>(m: Map<K, V>, onEvict?: (k: K) => void) => {
    if (m.size < max) return;
    const first = m.keys().next().value as K;
    if (onEvict) onEvict(first);
    else m.delete(first);
  };

  const agentToken = (nodeId: string): Promise<string | undefined> => {
    const hit = nodeTokens.get(nodeId);
    if (hit && now() - hit.at < ttlMs) return hit.token;
    const token = (o.agentToken?.(nodeId) ?? Promise.resolve(undefined)).catch(() => undefined);
    nodeTokens.set(nodeId, { token, at: now() });
    return token;
  };

  const load = async (id: string): Promise<Route | undefined> => {
    const session = await o.store.get(id);
    if (!session) return undefined;
    const p = session.placement;
    if (session.state !== 'ready' || !p) return { session, upstream: undefined };
    // An agent in this process: straight to the sandbox, no hop through the agent's own server.
    const direct = p.tier === 'docker' && local?.nodeId === p.nodeId ? local.upstream(id) : undefined;
    if (direct) return { session, upstream: { origin: direct, headers: {} } };
    const up = upstreamOf(p);
    if (up && p.tier === 'docker') {
      const token = await agentToken(p.nodeId);
      if (token) up.headers['x-agent-token'] = token;
    }
    return { session, upstream: up };
  };

  /** A read of `id` that becomes its entry; a failed one is not kept (the next request asks again). */
  const track = (id: string, route: Promise<Route | undefined>, hit: Entry | undefined): Entry => {
    const entry: Entry = { route, at: now() };
    entry.unsubscribe =
      hit?.unsubscribe ??
      o.events.subscribe(id, (e) => {
        if (e.type === 'state') drop(id);
      });
    route.then(
      () => (entry.settled = true),
      () => routes.get(id) === entry && drop(id),
    );
    return entry;
  };

  /** Reads `id` again behind its answering entry `hit`, which it replaces unless `hit` was dropped meanwhile. */
  const refresh = (id: string, hit: Entry) => {
    hit.refreshing = true;
    load(id).then(
      (route) => {
        // A state event dropped `hit` while this read ran: what it read may predate the event.
        if (routes.get(id) === hit) routes.set(id, track(id, Promise.resolve(route), hit));
      },
      () => {
        if (routes.get(id) === hit) drop(id);
      },
    );
  };

  return {
    /** The preview's route (from memory when fresh), or `undefined` when there is no such preview. */
    route(id: string): Promise<Route | undefined> {
      const hit = routes.get(id);
      const age = hit ? now() - hit.at : Number.POSITIVE_INFINITY;
      if (hit && age < ttlMs) return hit.route;
      if (hit?.settled && age < staleMs) {
        if (!hit.refreshing) refresh(id, hit);
        return hit.route;
      }
      // A preview already here keeps its place (and its subscription, which eviction would end).
      if (!hit) evictOldest(routes, drop);
      const entry = track(id, load(id), hit);
      routes.set(id, entry);
      return entry.route;
    },
    /** Forgets what is known of `id` (after this replica changed its state). */
    invalidate: drop,
    /**
     * The user an access cookie of preview `id` admits. Verified once, then kept until its `exp`.
     * @throws UnauthorizedError (from `accessTokens.verify`) for a token that does not verify.
     */
    async cookieUser(id: string, token: string): Promise<string> {
      const key = `${id}\n${token}`;
      const hit = cookies.get(key);
      if (hit && hit.expMs > now()) return hit.userId;
      const { userId } = await o.accessTokens.verify(token, { previewId: id, kind: 'cookie' });
      evictOldest(cookies);
      cookies.set(key, { userId, expMs: expiryOf(token) ?? now() + ttlMs });
      return userId;
    },
    /** Sends docker previews of `agent.nodeId` straight to their sandboxes (embedded mode). */
    setLocalAgent(agent: LocalAgent | undefined) {
      local = agent;
      for (const id of [...routes.keys()]) drop(id);
    },
    close() {
      for (const id of [...routes.keys()]) drop(id);
      cookies.clear();
      nodeTokens.clear();
    },
  };
}
export type RoutingCache = ReturnType<typeof createRoutingCache>;

/** The `exp` of a JWT in ms (already verified by the caller), or `undefined`. */
function expiryOf(jwt: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
