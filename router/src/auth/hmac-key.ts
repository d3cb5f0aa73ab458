/**
 * An HS256 secret as a WebCrypto key, imported once. jose signs and verifies with a `CryptoKey` as
 * it is; given the secret's bytes it imports them again on every call (an `importKey` per token: a
 * list of N previews signed N `previewUrl` tokens, each with its own import, about a quarter of the
 * router's CPU under the scale bench's API probe).
 *
 * @example
 * const key = hs256Key(secret);
 * await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).sign(await key);
 */
export function hs256Key(secret: string): Promise<CryptoKey> {
  const key = crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign', 'verify'],
  );
  // Kept for later: a refused secret (empty) fails each sign or verify that awaits it, not the process.
  key.catch(() => {});
  return key;
}
