/**
 * Whether a bearer token is one of ours (removed before the request reaches the app): an API key
 * (`pk_`), a node credential (`pn_`), or a preview access token (a JWT whose `aud` is
 * `preview-link` or `preview-cookie`). Anything else, an app's own token included, is not.
 */
export function isOurCredential(token: string): boolean {
  if (token.startsWith('pk_') || token.startsWith('pn_')) return true;
  try {
    const aud = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')).aud;
    return aud === 'preview-link' || aud === 'preview-cookie';
  } catch {
    return false;
  }
}
