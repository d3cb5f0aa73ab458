import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createReverseProxy } from '@preview/tiers/proxy';
import type { Context } from 'hono';
import type { Logger } from 'pino';
import type { AccessTokens } from '../auth/access-token.ts';
import type { Metrics } from '../metrics.ts';
import type { PreviewService } from '../previews.ts';
import { createActivity } from './activity.ts';
import { isOurCredential } from './our-credential.ts';
import { PreviewAccess } from './preview-access.ts';
import { type ProxyContext, proxyHttp } from './proxy-http.ts';
import { proxyUpgrade } from './proxy-upgrade.ts';
import { appSetCookie } from './request-rules.ts';
import { createRoutingCache, type LocalAgent } from './routing-cache.ts';
import { createStatusResponder, upstreamDownResponder } from './status-responses.ts';

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
  const reverse = createReverseProxy();
  const ctx: ProxyContext = {
    domain: o.domain,
    previews,
    access: new PreviewAccess({
      routes,
      accessTokens,
      previews,
      metrics,
      cookieTtlMs: o.cookieTtlMs,
      wakeWaitMs: o.wakeWaitMs,
      secureContext,
    }),
    activity: createActivity({
      store: previews.store,
      ...(o.activityThrottleMs !== undefined ? { throttleMs: o.activityThrottleMs } : {}),
    }),
    reverse,
    metrics,
    log: o.log,
    edge: { scheme: o.scheme, trustProxy: o.trustProxy ?? false, isOurCredential },
    setCookie: appSetCookie(secureContext),
    page: createStatusResponder(previews.events),
    upstreamDown: upstreamDownResponder(o.domain),
  };
  return {
    handle: (c) => proxyHttp(ctx, c),
    upgrade: (req, socket, head) => proxyUpgrade(ctx, req, socket, head),
    setLocalAgent: (agent) => routes.setLocalAgent(agent),
    close() {
      routes.close();
      reverse.close();
    },
  };
}
