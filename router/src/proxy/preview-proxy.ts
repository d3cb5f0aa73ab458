import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { LIVE_STATES, TimeoutError } from '@preview/tiers';
import { ACCESS_COOKIE, createReverseProxy, type ReverseProxy, readCookie } from '@preview/tiers/proxy';
import type { Context } from 'hono';
import type { Logger } from 'pino';
import type { AccessTokens } from '../auth/access-token.ts';
import type { Metrics } from '../metrics.ts';
import type { PreviewService } from '../previews.ts';
import { sseForPreview } from '../sse.ts';
import type { Session } from '../store/sessions.ts';
import { ACTIVITY_PATH, ACTIVITY_SCRIPT_PATH, createActivity } from './activity.ts';
import { accessCookie, previewIdFromHost } from './preview-host.ts';
import { appRequestHeaders, appSetCookie } from './request-rules.ts';
import { createRoutingCache, type LocalAgent, type Route } from './routing-cache.ts';
import { type StatusKind, statusPage } from './status-page.ts';

export { upstreamOf } from './routing-cache.ts';

export interface PreviewHostHandler {
  /** A response for a preview-origin request, or `undefined` when `c` is not for a preview origin. */
  handle(c: Context, clientIp: string): Promise<Response | undefined>;
  /** Takes a WebSocket upgrade for a preview origin; returns false if the Host is not one. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  /** Sends docker previews of an agent in this process straight to their sandboxes (embedded mode). */
  setLocalAgent(agent: LocalAgent | undefined): void;
  close(): void;
}

export interface PreviewProxyOptions {
  previews: PreviewService;
  accessTokens: AccessTokens;
  domain: string;
  scheme: 'http' | 'https';
  /** `TRUST_PROXY`: `X-Forwarded-*` headers that arrive come from our load balancer. @default false */
  trustProxy?: boolean;
  cookieTtlMs: number;
  wakeWaitMs: number;
  /** Page views and pings move `last_view_at` at most once per this long per preview. @default 15000 */
  activityThrottleMs?: number;
  metrics: Metrics;
  log: Logger;
  /** The token a docker node's agent accepts (sent as `x-agent-token`, so the app's own Authorization passes through). */
  agentToken?: (nodeId: string) => Promise<string | undefined>;
}

/** Our credentials as a bearer token: API keys, node credentials, preview access tokens. */
function isOurCredential(token: string): boolean {
  if (token.startsWith('pk_') || token.startsWith('pn_')) return true;
  try {
    const aud = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')).aud;
    return aud === 'preview-link' || aud === 'preview-cookie';
  } catch {
    return false;
  }
}

/**
 * The preview proxy: `<id>.<domain>` → the placement's upstream, HTTP (streamed) and WebSocket
 * upgrades through the same Host parsing, cookie check and header rules (`request-rules.ts`).
 * Routing comes from memory (`routing-cache.ts`); an agent in this process is skipped for its
 * sandbox. Serves the status page while the preview is not ready, wakes suspended previews, turns
 * `?token=` into the origin's HttpOnly cookie, and records activity (`activity.ts`).
 */
export function createPreviewProxy(o: PreviewProxyOptions): PreviewHostHandler {
  const { previews, accessTokens, metrics } = o;
  const secureContext = o.scheme === 'https' || o.domain === 'localhost' || o.domain.endsWith('.localhost');
  const routes = createRoutingCache({
    store: previews.store,
    events: previews.events,
    accessTokens,
    ...(o.agentToken ? { agentToken: o.agentToken } : {}),
  });
  const activity = createActivity({
    store: previews.store,
    ...(o.activityThrottleMs !== undefined ? { throttleMs: o.activityThrottleMs } : {}),
  });
  const reverse: ReverseProxy = createReverseProxy();
  const edge = { scheme: o.scheme, trustProxy: o.trustProxy ?? false, isOurCredential };
  const setCookie = appSetCookie(secureContext);

  const page = async (
    s: Session | undefined,
    id: string,
    kind: StatusKind,
    status: number,
    message?: string,
  ) => {
    const log = s ? await previews.events.lastLogLines(id).catch(() => []) : [];
    const live = !!s && LIVE_STATES.includes(s.state) && kind !== 'browser';
    return new Response(statusPage({ kind, previewId: id, message, log, live }), {
      status,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'x-preview-status': kind,
        ...(status === 503 ? { 'retry-after': '2' } : {}),
      },
    });
  };
  const upstreamDown = (res: ServerResponse) => {
    const id = previewIdFromHost(res.req.headers.host, o.domain) ?? '';
    const html = statusPage({
      kind: 'error',
      previewId: id,
      message: 'the preview did not answer',
      log: [],
      live: true,
    });
    res.writeHead(502, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'x-preview-status': 'error',
    });
    res.end(html);
  };

  const kindOf = async (s: Session): Promise<StatusKind> => {
    if (s.state === 'failed') return 'error';
    if (s.state === 'ended' || s.state === 'stopping') return 'ended';
    if (s.tier === 'browser') return 'browser';
    if (s.state === 'suspended') return 'waking';
    if (s.state === 'queued' || s.state === 'provisioning' || s.state === 'migrating') return 'queued';
    const recent = await previews.events.recent(s.id, 20);
    const phase = [...recent].reverse().find((e) => e.type === 'status');
    if (phase?.type === 'status' && phase.phase === 'installing') return 'installing';
    if (phase?.type === 'status' && phase.phase === 'error') return 'error';
    return 'compiling';
  };

  /** The route of preview `id` for the holder of `cookieHeader`; throws when the cookie does not admit them. */
  const authorize = async (id: string, cookieHeader: string | undefined): Promise<Route | undefined> => {
    const token = readCookie(cookieHeader, ACCESS_COOKIE);
    if (!token) throw new Error('no preview access cookie');
    const userId = await routes.cookieUser(id, token);
    const r = await routes.route(id);
    return r && r.session.userId === userId ? r : undefined;
  };

  /** A suspended preview is resumed and waited for; a starting one is watched by this replica too. */
  const wake = async (r: Route, id: string): Promise<Route | undefined> => {
    if (r.session.state === 'suspended') {
      await previews.resumeSession(r.session);
      await previews.waitReady(id, o.wakeWaitMs);
      routes.invalidate(id);
      return await routes.route(id);
    }
    if (r.session.state === 'starting') previews.watchReadiness(id);
    return r;
  };

  /** `?token=<link token>` → the origin's cookie and a redirect to the clean URL; `undefined` when it is not ours. */
  const exchange = async (id: string, url: URL): Promise<Response | undefined> => {
    const link = url.searchParams.get('token');
    if (!link) return undefined;
    let userId: string;
    try {
      ({ userId } = await accessTokens.verify(link, { previewId: id, kind: 'link' }));
    } catch {
      return undefined;
    }
    const cookie = await accessTokens.sign({ previewId: id, userId, kind: 'cookie', ttlMs: o.cookieTtlMs });
    url.searchParams.delete('token');
    metrics.proxyRequests.inc({ kind: 'http', outcome: 'token_exchanged' });
    return new Response(null, {
      status: 302,
      headers: {
        location: `${url.pathname}${url.search}`,
        'set-cookie': accessCookie(cookie, { maxAgeS: Math.floor(o.cookieTtlMs / 1000), secureContext }),
        'cache-control': 'no-store',
      },
    });
  };

  const targetOf = (r: Route, req: IncomingMessage) => {
    const up = r.upstream!;
    const headers: Record<string, string | undefined> = { ...appRequestHeaders(req, edge), ...up.headers };
    // Fly's edge routes by Host; the daemon restores the browser's from X-Forwarded-Host.
    if (r.session.placement?.tier === 'fly') headers['host'] = new URL(up.origin).host;
    return { origin: up.origin, headers };
  };

  return {
    async handle(c) {
      const env = c.env as { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;
      const req = env?.incoming;
      const id = previewIdFromHost(req?.headers.host ?? c.req.header('host'), o.domain);
      if (!id) return undefined;
      const url = new URL(req?.url ?? c.req.url, 'http://x');
      let r: Route | undefined;
      try {
        r = await authorize(id, req?.headers.cookie ?? c.req.header('cookie'));
      } catch {
        const exchanged = await exchange(id, url);
        if (exchanged) return exchanged;
        metrics.proxyRequests.inc({ kind: 'http', outcome: 'unauthorized' });
        const expired = url.searchParams.has('token')
          ? 'The preview link expired: reopen it from the editor.'
          : undefined;
        return await page(undefined, id, 'unauthorized', 401, expired);
      }
      // A valid link token is exchanged even with a cookie (a new link); any other ?token= is the app's.
      const exchanged = url.searchParams.has('token') ? await exchange(id, url) : undefined;
      if (exchanged) return exchanged;
      if (!r) return await page(undefined, id, 'not_found', 404);
      if (url.pathname === '/__router/events')
        return (await sseForPreview(c, previews, r.session)) as Response;
      if (url.pathname === ACTIVITY_SCRIPT_PATH) return activity.script();
      if (url.pathname === ACTIVITY_PATH) {
        // A person came back to the page: wake the preview without holding the ping.
        if (r.session.state === 'suspended' && c.req.method === 'POST')
          void previews
            .resumeSession(r.session)
            .catch((err) => o.log.warn({ err, previewId: id }, 'wake failed'));
        return activity.ping(id, c.req.method);
      }
      // Only a person wakes a preview: a page view (or a ping, above), not a background poll.
      const asked = req ?? {
        headers: Object.fromEntries(c.req.raw.headers),
        method: c.req.method,
        url: url.pathname,
      };
      const seen = activity.noteRequest(id, asked);
      if (r.session.state === 'suspended' && !seen.wakes) return await page(r.session, id, 'suspended', 503);
      const asleep = r.session;
      try {
        r = await wake(r, id);
      } catch (e) {
        if (!(e instanceof TimeoutError)) throw e;
        return await page(asleep, id, 'waking', 503);
      }
      if (!r) return await page(undefined, id, 'not_found', 404);
      const s = r.session;
      if (s.state !== 'ready' || s.tier === 'browser') {
        const kind = await kindOf(s);
        return await page(s, id, kind, kind === 'browser' ? 200 : 503, s.error ?? undefined);
      }
      if (!r.upstream) return await page(s, id, 'error', 502, 'no upstream for this placement');
      if (!req || !env.outgoing)
        return await page(
          s,
          id,
          'error',
          500,
          "the preview proxy runs on Node's HTTP server (@hono/node-server)",
        );
      const res = env.outgoing;
      res.once('finish', () => {
        const down = res.getHeader('x-preview-status') === 'error';
        metrics.proxyRequests.inc({
          kind: 'http',
          outcome: down ? 'upstream_error' : String(res.statusCode),
        });
      });
      reverse.web(req, res, {
        ...targetOf(r, req),
        ...(setCookie ? { setCookie } : {}),
        ...(seen.inject ? { injectHtml: activity.snippet } : {}),
        errorResponse: upstreamDown,
        onError: (err) => o.log.warn({ err, previewId: id }, 'upstream request failed'),
      });
      return RESPONSE_ALREADY_SENT;
    },

    upgrade(req, socket, head) {
      const id = previewIdFromHost(req.headers.host, o.domain);
      if (!id) return false;
      const reject = (status: number, text: string) => {
        metrics.proxyRequests.inc({ kind: 'ws', outcome: String(status) });
        socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      };
      socket.on('error', () => {});
      void (async () => {
        let r: Route | undefined;
        try {
          r = await authorize(id, req.headers.cookie);
        } catch {
          return reject(401, 'Unauthorized');
        }
        if (!r) return reject(404, 'Not Found');
        // A socket (HMR, the app's own) does not wake a suspended preview: a page view or a ping does.
        if (r.session.state === 'suspended') return reject(503, 'Service Unavailable');
        r = await wake(r, id).catch(() => undefined);
        if (r?.session.state !== 'ready' || !r.upstream) return reject(503, 'Service Unavailable');
        metrics.proxyRequests.inc({ kind: 'ws', outcome: 'proxied' });
        reverse.ws(req, socket, head, {
          ...targetOf(r, req),
          onError: (err) => o.log.warn({ err, previewId: id }, 'upstream upgrade failed'),
        });
      })().catch((err) => {
        o.log.warn({ err, previewId: id }, 'upgrade failed');
        reject(500, 'Internal Server Error');
      });
      return true;
    },

    setLocalAgent: (agent) => routes.setLocalAgent(agent),
    close() {
      routes.close();
      reverse.close();
    },
  };
}
