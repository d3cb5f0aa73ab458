import { ACCESS_COOKIE, readCookie } from '@preview/tiers/proxy';
import type { AccessTokens } from '../auth/access-token.ts';
import type { Metrics } from '../metrics.ts';
import type { PreviewService } from '../previews.ts';
import { accessCookie } from './preview-host.ts';
import type { Route, RoutingCache } from './routing-cache.ts';

/** What {@link PreviewAccess} needs. */
export interface PreviewAccessContext {
  routes: Pick<RoutingCache, 'cookieUser' | 'route' | 'invalidate'>;
  accessTokens: Pick<AccessTokens, 'sign' | 'verify'>;
  previews: Pick<PreviewService, 'resumeSession' | 'waitReady' | 'watchReadiness'>;
  metrics: Pick<Metrics, 'proxyRequests'>;
  /** Life of the origin's access cookie, ms. */
  cookieTtlMs: number;
  /** How long a page view waits for a suspended preview to wake, ms. */
  wakeWaitMs: number;
  /** The cookie is `Secure` (https, or a `localhost` domain browsers treat as secure). */
  secureContext: boolean;
}

/** Who may see a preview origin, the link-token → cookie exchange, and waking a preview. */
export class PreviewAccess {
  readonly #ctx: PreviewAccessContext;

  constructor(ctx: PreviewAccessContext) {
    this.#ctx = ctx;
  }

  /**
   * The route of preview `id` for the holder of `cookieHeader`; `undefined` when the preview is
   * gone or another user's.
   * @throws Error when there is no access cookie or it does not admit its holder to this preview.
   */
  async authorize(id: string, cookieHeader: string | undefined): Promise<Route | undefined> {
    const token = readCookie(cookieHeader, ACCESS_COOKIE);
    if (!token) throw new Error('no preview access cookie');
    const userId = await this.#ctx.routes.cookieUser(id, token);
    const r = await this.#ctx.routes.route(id);
    return r && r.session.userId === userId ? r : undefined;
  }

  /**
   * `?token=<link token>` → the origin's cookie and a 302 to the same URL without the token;
   * `undefined` when there is no `token` or it is not a valid link token for this preview.
   */
  async exchange(id: string, url: URL): Promise<Response | undefined> {
    const { accessTokens, cookieTtlMs, secureContext } = this.#ctx;
    const link = url.searchParams.get('token');
    if (!link) return undefined;
    let userId: string;
    try {
      ({ userId } = await accessTokens.verify(link, { previewId: id, kind: 'link' }));
    } catch {
      return undefined;
    }
    const cookie = await accessTokens.sign({ previewId: id, userId, kind: 'cookie', ttlMs: cookieTtlMs });
    url.searchParams.delete('token');
    this.#ctx.metrics.proxyRequests.inc({ kind: 'http', outcome: 'token_exchanged' });
    return new Response(null, {
      status: 302,
      headers: {
        location: `${url.pathname}${url.search}`,
        'set-cookie': accessCookie(cookie, { maxAgeS: Math.floor(cookieTtlMs / 1000), secureContext }),
        'cache-control': 'no-store',
      },
    });
  }

  /**
   * A suspended preview is resumed and waited for (its fresh route returned); a starting one is
   * watched by this replica too.
   * @throws TimeoutError when it is not ready within `wakeWaitMs`.
   */
  async wake(r: Route, id: string): Promise<Route | undefined> {
    const { previews, routes } = this.#ctx;
    if (r.session.state === 'suspended') {
      await previews.resumeSession(r.session);
      await previews.waitReady(id, this.#ctx.wakeWaitMs);
      routes.invalidate(id);
      return await routes.route(id);
    }
    if (r.session.state === 'starting') previews.watchReadiness(id);
    return r;
  }
}
