import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Hop-by-hop headers: they describe one connection, not the request, so no proxy forwards them
 * (RFC 9110 §7.6.1; `proxy-connection` and `keep-alive` are the legacy forms browsers still send).
 * `upgrade` and `connection` are re-added for a WebSocket upgrade, which must ask the next hop too.
 */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
];

/**
 * Credentials between our own hops (router → agent): a request never carries them past the hop
 * that checks them, and one that arrives from a browser is dropped before anything reads it.
 */
export const CREDENTIAL_HEADERS: readonly string[] = ['x-agent-token'];

/** The cookie that carries a browser's access to one preview origin; the app never sees it. */
export const ACCESS_COOKIE = '__preview_access';

const HOP = new Set(HOP_BY_HOP_HEADERS);
const CREDENTIAL = new Set(CREDENTIAL_HEADERS);

/** Header names a `Connection` header lists: hop-by-hop for this connection only (RFC 9110 §7.6.1). */
function connectionListed(h: IncomingHttpHeaders): Set<string> {
  const v = h['connection'];
  if (!v) return new Set();
  return new Set(
    String(v)
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s && s !== 'close' && s !== 'keep-alive' && s !== 'upgrade'),
  );
}

/**
 * The headers of a request as the next hop should get them: hop-by-hop headers, the headers the
 * `Connection` header names and our hop credentials removed; for a WebSocket upgrade `Connection:
 * Upgrade` and the `Upgrade` header kept. Everything else, `Host` and `Cookie` included, is passed
 * as it came.
 *
 * @example
 * forwardRequestHeaders({ host: 'a', connection: 'keep-alive', cookie: 'x=1' }, { upgrade: false })
 * // { host: 'a', cookie: 'x=1' }
 */
export function forwardRequestHeaders(
  h: IncomingHttpHeaders,
  o: { upgrade: boolean; keepCredentials?: boolean },
): IncomingHttpHeaders {
  const listed = connectionListed(h);
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP.has(k) || listed.has(k)) continue;
    if (!o.keepCredentials && CREDENTIAL.has(k)) continue;
    out[k] = v;
  }
  if (o.upgrade) {
    out['connection'] = 'Upgrade';
    out['upgrade'] = h['upgrade'] ?? 'websocket';
  }
  return out;
}

/** A response's headers for the client: hop-by-hop headers (and those `Connection` names) removed. */
export function forwardResponseHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionListed(h);
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP.has(k) || listed.has(k) || k === 'transfer-encoding') continue;
    out[k] = v;
  }
  return out;
}

/**
 * A `Cookie` header without the cookie named `name` (every other pair kept as sent, in order), or
 * `undefined` when nothing is left.
 *
 * @example
 * withoutCookie('a=1; __preview_access=t; b=2', '__preview_access') // 'a=1; b=2'
 */
export function withoutCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const kept = header
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p && p.slice(0, Math.max(p.indexOf('='), 0)).trim() !== name);
  return kept.length ? kept.join('; ') : undefined;
}

/** The value of cookie `name` in a `Cookie` header (URI-decoded), or `undefined`. */
export function readCookie(header: string | undefined | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      const raw = part.slice(i + 1).trim();
      try {
        return decodeURIComponent(raw);
      } catch {
        return raw;
      }
    }
  }
  return undefined;
}

/**
 * A `Set-Cookie` line from an app, made to work the same at the top level and inside a cross-site
 * iframe: without `SameSite=None` a browser refuses to store or send it from the editor's frame
 * (RFC 6265bis §5.4.7), so the proxy marks it `SameSite=None; Secure; Partitioned` (CHIPS: the
 * cookie is kept per top-level site, which is where third-party cookies are allowed at all). Every
 * other attribute (name, value, Path, Domain, Max-Age, Expires, HttpOnly) stays as the app wrote it.
 *
 * @example
 * crossSiteCookie('sid=1; Path=/; SameSite=Lax; HttpOnly') // 'sid=1; Path=/; HttpOnly; SameSite=None; Secure; Partitioned'
 */
export function crossSiteCookie(line: string): string {
  const parts = line.split(';').map((p) => p.trim());
  const [pair, ...attrs] = parts;
  const kept = attrs.filter((a) => {
    const n = a.split('=')[0]!.trim().toLowerCase();
    return a && n !== 'samesite' && n !== 'secure' && n !== 'partitioned';
  });
  return [pair, ...kept, 'SameSite=None', 'Secure', 'Partitioned'].join('; ');
}
