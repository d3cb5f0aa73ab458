import { createHash, timingSafeEqual } from 'node:crypto';

/** Where a request may carry the agent's token. */
export interface TokenSources {
  authorization?: string | string[] | undefined;
  'x-agent-token'?: string | string[] | undefined;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * The bearer tokens the agent's API accepts: its own `AGENT_TOKEN`, the embedded router's, and each
 * node credential the router hands out at (re-)registration. Compared by digest in constant time, so
 * neither the content nor the length of a token leaks through timing.
 *
 * @example
 * const tokens = new TokenSet(['x'.repeat(32)]);
 * tokens.accepts({ authorization: `Bearer ${'x'.repeat(32)}` }); // true
 */
export class TokenSet {
  readonly #digests: Buffer[] = [];

  constructor(tokens: Iterable<string> = []) {
    for (const t of tokens) this.add(t);
  }

  get size(): number {
    return this.#digests.length;
  }

  add(token: string): void {
    const d = digest(token);
    if (!this.#digests.some((x) => x.equals(d))) this.#digests.push(d);
  }

  /**
   * Whether the request carries an accepted token: `x-agent-token`, else `Authorization: Bearer`,
   * else (sync sockets only) the `?token=` query value passed as `query`.
   */
  accepts(headers: TokenSources, query?: string | null): boolean {
    const given = one(headers['x-agent-token']) ?? bearer(one(headers.authorization)) ?? query ?? undefined;
    if (!given) return false;
    const d = digest(given);
    let ok = false;
    for (const x of this.#digests) ok = timingSafeEqual(x, d) || ok;
    return ok;
  }
}

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
const bearer = (h: string | undefined): string | undefined =>
  h?.startsWith('Bearer ') ? h.slice(7) : undefined;
