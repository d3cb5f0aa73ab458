import type { IncomingMessage } from 'node:http';
import { RUNTIME_ERROR_MESSAGE } from '@preview/tiers';
import type { SessionStore } from '../store/sessions.ts';

/** Where the preview's injected client reports that a person is using the page. */
export const ACTIVITY_PATH = '/__router/activity';
/** The injected client itself (same origin, so an app's `script-src 'self'` allows it). */
export const ACTIVITY_SCRIPT_PATH = '/__router/activity.js';

/** How often the client reports while a page stays visible and focused without input (ms). */
export const HEARTBEAT_MS = 20_000;

/**
 * Why the client pinged (`?why=` on {@link ACTIVITY_PATH}): `input` (pointer, keys, wheel, touch),
 * `visible` (the tab came back), `beat` (every `HEARTBEAT_MS` while visible and focused), `load`.
 * All count as activity; only {@link WAKING_PINGS} wake a suspended preview.
 */
export type PingReason = 'input' | 'visible' | 'beat' | 'load';
/**
 * Pings that wake a suspended preview: a person acting on the page. A heartbeat of a page left open
 * (or one in flight when the user pressed Suspend) keeps a live preview alive but wakes nothing.
 */
export const WAKING_PINGS: ReadonlySet<string> = new Set<PingReason>(['input', 'visible']);

/**
 * The injected client: reports activity only while the page is visible, on input (pointer, keys,
 * wheel, touch; at most once per `everyMs`), when the page becomes visible, and every
 * `HEARTBEAT_MS` while it is visible and focused, each saying why ({@link PingReason}). A hidden
 * tab that keeps polling the app sends nothing.
 * Framed, it also posts the app's uncaught errors to the parent (`RUNTIME_ERROR_MESSAGE`).
 */
const client = (everyMs: number) => `(() => {
  if (window.__previewActivity) return;
  window.__previewActivity = true;
  let last = 0;
  const ping = (why) => {
    if (document.visibilityState !== 'visible') return;
    const now = Date.now();
    if (why === 'input' && now - last < ${everyMs}) return;
    last = now;
    fetch('${ACTIVITY_PATH}?why=' + why, { method: 'POST', credentials: 'same-origin', keepalive: true }).catch(() => {});
  };
  for (const t of ['pointerdown', 'keydown', 'wheel', 'touchstart', 'pointermove'])
    addEventListener(t, () => ping('input'), { capture: true, passive: true });
  document.addEventListener('visibilitychange', () => ping('visible'));
  setInterval(() => { if (document.hasFocus()) ping('beat'); }, ${HEARTBEAT_MS});
  ping('load');
  if (window.parent !== window) {
    const report = (message, file, line, column, stack) => {
      try {
        parent.postMessage({ type: '${RUNTIME_ERROR_MESSAGE}', message: String(message).slice(0, 4000),
          file: file || undefined, line: line || undefined, column: column || undefined,
          stack: stack ? String(stack).slice(0, 4000) : undefined }, '*');
      } catch {}
    };
    addEventListener('error', (e) => report(e.message, e.filename, e.lineno, e.colno, e.error && e.error.stack));
    addEventListener('unhandledrejection', (e) => {
      const r = e.reason;
      report(r && r.message ? 'Unhandled rejection: ' + r.message : 'Unhandled rejection: ' + r, '', 0, 0, r && r.stack);
    });
  }
})();
`;

/**
 * Whether a request is a person opening a page: a navigation of a top-level document or an
 * iframe (`Sec-Fetch-Dest`; a client without Fetch Metadata: `Accept: text/html`). Subresources,
 * `fetch`/XHR polling, HMR sockets and the daemon's `/__preview/*` probes are not.
 */
export function isDocumentRequest(req: Pick<IncomingMessage, 'headers' | 'method' | 'url'>): boolean {
  if (req.method !== 'GET' || (req.url ?? '/').startsWith('/__preview/')) return false;
  const dest = req.headers['sec-fetch-dest'];
  if (dest) return dest === 'document' || dest === 'iframe';
  return String(req.headers.accept ?? '').includes('text/html');
}

/**
 * Activity of previews (README "Idle and activity"): page views and the injected client's pings
 * move `last_view_at`, at most once per `throttleMs` per preview and replica (one UPDATE, off the
 * request's path).
 *
 * @example
 * const activity = createActivity({ store });
 * if (activity.noteRequest(id, req).inject) inject(activity.snippet);
 */
export function createActivity(o: {
  store: Pick<SessionStore, 'touch'>;
  throttleMs?: number;
  now?: () => number;
}) {
  const throttleMs = o.throttleMs ?? 15_000;
  const now = o.now ?? Date.now;
  const last = new Map<string, number>();
  const touch = (id: string) => {
    const t = now();
    if ((last.get(id) ?? 0) > t - throttleMs) return;
    if (last.size > 50_000) last.clear();
    last.set(id, t);
    void o.store.touch(id, 'view').catch(() => last.delete(id));
  };
  return {
    /** What goes right after `<head>` of a page: the activity client. */
    snippet: `<script src="${ACTIVITY_SCRIPT_PATH}" async></script>`,
    /** The activity client (reports input at most once per `throttleMs`), cached by the browser for an hour. */
    script(): Response {
      return new Response(client(throttleMs), {
        headers: {
          'content-type': 'text/javascript; charset=utf-8',
          'cache-control': 'public, max-age=3600',
        },
      });
    },
    /**
     * Counts `req` if it is a page view. `inject`: a browser's navigation (its HTML gets the
     * client); `wakes`: it may wake a suspended preview (a page view, or a client that is not a
     * browser tab: no Fetch Metadata, such as curl or a native app).
     */
    noteRequest(
      id: string,
      req: Pick<IncomingMessage, 'headers' | 'method' | 'url'>,
    ): { inject: boolean; wakes: boolean } {
      const fromTab = req.headers['sec-fetch-dest'] !== undefined;
      if (!isDocumentRequest(req)) return { inject: false, wakes: !fromTab };
      touch(id);
      return { inject: fromTab, wakes: true };
    },
    /** A ping from the client: activity. `POST` only (a prefetch or a crawler's GET is not a person). */
    ping(id: string, method: string): Response {
      if (method !== 'POST') return new Response(null, { status: 405, headers: { allow: 'POST' } });
      touch(id);
      return new Response(null, { status: 204, headers: { 'cache-control': 'no-store' } });
    },
  };
}
