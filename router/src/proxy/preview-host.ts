/** One Host parser for HTTP and the WebSocket upgrade alike. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The preview id a Host header addresses, or `undefined` if it is not a preview origin.
 *
 * @example
 * previewIdFromHost('0b6f...-...e1.preview.localhost:8787', 'preview.localhost') // '0b6f...e1'
 */
export function previewIdFromHost(host: string | undefined | null, domain: string): string | undefined {
  if (!host) return undefined;
  const name = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
  const suffix = `.${domain.toLowerCase()}`;
  if (!name.endsWith(suffix)) return undefined;
  const label = name.slice(0, -suffix.length);
  return UUID.test(label) ? label : undefined;
}

export const ACCESS_COOKIE = '__preview_access';

export function readCookie(header: string | undefined | null, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}

/**
 * The access cookie for a preview origin. Cross-site iframes need `SameSite=None` (+ `Secure`,
 * + `Partitioned` for third-party-cookie blocking); Chromium treats `*.localhost` as secure, so the
 * same attributes work locally over http. Elsewhere over plain http, fall back to `Lax`.
 */
export function accessCookie(value: string, o: { maxAgeS: number; secureContext: boolean }): string {
  const base = `${ACCESS_COOKIE}=${encodeURIComponent(value)}; Path=/; HttpOnly; Max-Age=${o.maxAgeS}`;
  return o.secureContext ? `${base}; Secure; SameSite=None; Partitioned` : `${base}; SameSite=Lax`;
}
