import { InvalidInputError } from '@preview/tiers';

const strict = new TextDecoder('utf-8', { fatal: true });
const lenient = new TextDecoder('utf-8');

/**
 * Checks the raw body of `PUT /files` for invalid UTF-8 before it is parsed: a JSON parser would
 * turn each bad byte into U+FFFD silently and the file would be stored changed. The sync socket
 * refuses such a frame too (close 1007, RFC 6455 §8.1). Names the put whose content is broken.
 *
 * @throws InvalidInputError `invalid_utf8`
 * @example
 * assertUtf8Body(new Uint8Array(await c.req.arrayBuffer()));
 */
export function assertUtf8Body(raw: Uint8Array): void {
  try {
    strict.decode(raw);
    return;
  } catch {
    // Find the put that carries the bad bytes, for the message.
  }
  let ops: unknown;
  try {
    ops = (JSON.parse(lenient.decode(raw)) as { ops?: unknown }).ops;
  } catch {
    ops = undefined;
  }
  if (Array.isArray(ops))
    for (const [i, op] of ops.entries()) {
      const o = op as { op?: unknown; path?: unknown; content?: unknown; encoding?: unknown };
      if (
        o?.op === 'put' &&
        o.encoding !== 'base64' &&
        typeof o.content === 'string' &&
        o.content.includes('\uFFFD')
      )
        throw new InvalidInputError(
          'invalid_utf8',
          `body.ops.${i}.content: ${JSON.stringify(o.path)} is not valid UTF-8 (rule utf8); send bytes with encoding "base64"`,
        );
    }
  throw new InvalidInputError('invalid_utf8', 'body: not valid UTF-8 (rule utf8)');
}
