import type { IncomingMessage } from 'node:http';
import { ACCESS_COOKIE, crossSiteCookie, withoutCookie } from '@preview/tiers/proxy';

/** The edge's view of one browser request, for the rules below. */
export interface EdgeContext {
  /** The scheme the browser used: `PREVIEW_SCHEME`, or the load balancer's `X-Forwarded-Proto` with `TRUST_PROXY`. */
  scheme: 'http' | 'https';
  /** `TRUST_PROXY`: the `X-Forwarded-*` headers that arrive were set by our load balancer. */
  trustProxy: boolean;
  /** Whether `Authorization: Bearer <token>` is one of our credentials (then it is removed). */
  isOurCredential: (bearerToken: string) => boolean;
}

/**
 * The headers the app gets that differ from what the browser sent (README "What the app sees"):
 * - `Host` is the browser's (the preview origin); the hop toward a Fly machine carries Fly's host and
 *   the daemon puts the browser's back from `X-Forwarded-Host`.
 * - `X-Forwarded-Host`, `-Proto`, `-For` say what the browser asked and from where; a browser's own
 *   values are replaced (appended to with `TRUST_PROXY`, as our load balancer set them), and
 *   `Forwarded` / `X-Real-IP` from a browser are dropped.
 * - `Cookie` loses only our access cookie; `Authorization` is removed only when it carries one of
 *   our credentials. An app's own bearer token (a Supabase session, its API keys) passes.
 * Over HTTP and WebSocket upgrades alike.
 *
 * @example
 * appRequestHeaders(req, { scheme: 'https', trustProxy: false, isOurCredential: () => false })
 * // { cookie: 'sid=1', 'x-forwarded-host': '<id>.preview.example.com', 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9', ... }
 */
export function appRequestHeaders(
  req: IncomingMessage,
  edge: EdgeContext,
): Record<string, string | undefined> {
  const h = req.headers;
  const peer = req.socket.remoteAddress ?? '';
  const trusted = edge.trustProxy;
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const xff = first(h['x-forwarded-for']);
  const auth = first(h.authorization);
  const bearer = auth && /^bearer\s+/i.test(auth) ? auth.replace(/^bearer\s+/i, '').trim() : undefined;
  return {
    cookie: withoutCookie(first(h.cookie), ACCESS_COOKIE),
    authorization: bearer && edge.isOurCredential(bearer) ? undefined : auth,
    'x-forwarded-host': (trusted && first(h['x-forwarded-host'])) || first(h.host) || '',
    'x-forwarded-proto': (trusted && first(h['x-forwarded-proto'])) || edge.scheme,
    'x-forwarded-for': trusted && xff ? `${xff}, ${peer}` : peer,
    forwarded: trusted ? first(h.forwarded) : undefined,
    'x-real-ip': trusted ? first(h['x-real-ip']) : undefined,
  };
}

/**
 * What the browser gets back as `Set-Cookie`: on a secure context (https, or `*.localhost`, which
 * browsers treat as secure) each cookie is made usable in the editor's cross-site iframe (see
 * `crossSiteCookie`); on plain http elsewhere a browser would refuse `SameSite=None`, so the app's
 * line passes unchanged. `Location` and every other response header pass as the app sent them.
 */
export function appSetCookie(secureContext: boolean): ((line: string) => string) | undefined {
  return secureContext ? crossSiteCookie : undefined;
}
