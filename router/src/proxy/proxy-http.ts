import type { IncomingMessage, ServerResponse } from 'node:http';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { TimeoutError } from '@preview/tiers';
import type { ReverseProxy } from '@preview/tiers/proxy';
import type { Context } from 'hono';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.ts';
import type { PreviewService } from '../previews.ts';
import { sseForPreview } from '../sse.ts';
import { ACTIVITY_PATH, ACTIVITY_SCRIPT_PATH, type createActivity, WAKING_PINGS } from './activity.ts';
import type { PreviewAccess } from './preview-access.ts';
import { previewIdFromHost } from './preview-host.ts';
import { appRequestHeaders, type EdgeContext } from './request-rules.ts';
import type { Route } from './routing-cache.ts';
import { type StatusResponder, statusKindOf } from './status-responses.ts';

/** What the preview proxy's request handlers need. */
export interface ProxyContext {
  domain: string;
  previews: PreviewService;
  access: Pick<PreviewAccess, 'authorize' | 'exchange' | 'wake'>;
  activity: ReturnType<typeof createActivity>;
  reverse: Pick<ReverseProxy, 'web' | 'ws'>;
  metrics: Pick<Metrics, 'proxyRequests'>;
  log: Pick<Logger, 'warn'>;
  edge: EdgeContext;
  /** Rewrites the app's `Set-Cookie` for the preview origin (unset: left as the app sent it). */
  setCookie: ((value: string) => string) | undefined;
  page: StatusResponder;
  upstreamDown: (res: ServerResponse) => void;
}

/** Where a request for a ready route goes: the upstream's origin and the headers the app gets. */
export function targetOf(
  r: Route,
  req: IncomingMessage,
  edge: EdgeContext,
): { origin: string; headers: Record<string, string | undefined> } {
  const up = r.upstream!;
  const headers: Record<string, string | undefined> = { ...appRequestHeaders(req, edge), ...up.headers };
  // Fly's edge routes by Host; the daemon restores the browser's from X-Forwarded-Host.
  if (r.session.placement?.tier === 'fly') headers['host'] = new URL(up.origin).host;
  return { origin: up.origin, headers };
}

/**
 * What lets a cross-origin-isolated page (the editor: COOP + COEP, for WebContainers) frame a
 * preview: a frame under COEP loads only when its answer has a COEP of its own and a CORP that allows
 * the embedder (checked in Chromium for both `require-corp` and `credentialless` editors).
 * `credentialless` keeps the app's own cross-origin subresources loading (sent without cookies, no
 * CORP needed). An app that sends its own values keeps them (they are set before the upstream's).
 */
export const EMBEDDABLE_HEADERS = {
  'cross-origin-embedder-policy': 'credentialless',
  'cross-origin-resource-policy': 'cross-origin',
} as const;

/**
 * One HTTP request for a preview origin: `undefined` when the Host is not one. Otherwise the access
 * check (cookie, or `?token=` exchanged for one), the router's own paths (events, activity), the
 * status page while the preview is not ready (a page view wakes a suspended one), and else the
 * request streamed to the upstream (`RESPONSE_ALREADY_SENT`).
 */
export async function proxyHttp(ctx: ProxyContext, c: Context): Promise<Response | undefined> {
  const { access, activity, metrics, page, previews } = ctx;
  const env = c.env as { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;
  const req = env?.incoming;
  const id = previewIdFromHost(req?.headers.host ?? c.req.header('host'), ctx.domain);
  if (!id) return undefined;
  // Every answer of a preview origin may be framed by the cross-origin-isolated editor page.
  for (const [k, v] of Object.entries(EMBEDDABLE_HEADERS)) env?.outgoing?.setHeader(k, v);
  const url = new URL(req?.url ?? c.req.url, 'http://x');
  let r: Route | undefined;
  try {
    r = await access.authorize(id, req?.headers.cookie ?? c.req.header('cookie'));
  } catch {
    const exchanged = await access.exchange(id, url);
    if (exchanged) return exchanged;
    metrics.proxyRequests.inc({ kind: 'http', outcome: 'unauthorized' });
    const expired = url.searchParams.has('token')
      ? 'The preview link expired: reopen it from the editor.'
      : undefined;
    return await page(undefined, id, 'unauthorized', 401, expired);
  }
  // A valid link token is exchanged even with a cookie (a new link); any other ?token= is the app's.
  const exchanged = url.searchParams.has('token') ? await access.exchange(id, url) : undefined;
  if (exchanged) return exchanged;
  if (!r) return await page(undefined, id, 'not_found', 404);
  if (url.pathname === '/__router/events') return (await sseForPreview(c, previews, r.session)) as Response;
  if (url.pathname === ACTIVITY_SCRIPT_PATH) return activity.script();
  if (url.pathname === ACTIVITY_PATH) {
    // A person acted on the page (input, or the tab came back): wake the preview without holding
    // the ping. A heartbeat or a load ping is activity but wakes nothing (an explicit suspend stays).
    if (
      r.session.state === 'suspended' &&
      c.req.method === 'POST' &&
      WAKING_PINGS.has(url.searchParams.get('why') ?? '')
    )
      void previews
        .resumeSession(r.session)
        .catch((err) => ctx.log.warn({ err, previewId: id }, 'wake failed'));
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
    r = await access.wake(r, id);
  } catch (e) {
    if (!(e instanceof TimeoutError)) throw e;
    return await page(asleep, id, 'waking', 503);
  }
  if (!r) return await page(undefined, id, 'not_found', 404);
  const s = r.session;
  if (s.state !== 'ready' || s.tier === 'browser') {
    const kind = await statusKindOf(s, previews.events);
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
  forward(ctx, r, req, env.outgoing, id, seen.inject);
  return RESPONSE_ALREADY_SENT;
}

/** Streams a request to a ready route's upstream, counting the outcome when the response ends. */
function forward(
  ctx: ProxyContext,
  r: Route,
  req: IncomingMessage,
  res: ServerResponse,
  id: string,
  inject: boolean,
): void {
  res.once('finish', () => {
    const down = res.getHeader('x-preview-status') === 'error';
    ctx.metrics.proxyRequests.inc({
      kind: 'http',
      outcome: down ? 'upstream_error' : String(res.statusCode),
    });
  });
  ctx.reverse.web(req, res, {
    ...targetOf(r, req, ctx.edge),
    ...(ctx.setCookie ? { setCookie: ctx.setCookie } : {}),
    ...(inject ? { injectHtml: ctx.activity.snippet } : {}),
    errorResponse: ctx.upstreamDown,
    onError: (err) =>
      ctx.log.warn(
        { err, previewId: id, nodeId: r.session.nodeId, tier: r.session.tier },
        'upstream request failed',
      ),
  });
}
