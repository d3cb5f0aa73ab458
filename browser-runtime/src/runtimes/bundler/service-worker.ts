/**
 * The bundler's service worker: answers requests under `/__preview-bundler/<id>/` from Cache
 * Storage, where BundlerRuntime publishes each build. No network: previews work offline.
 * Built into its own script (`preview-sw.js`) served at the origin's root.
 */
import { BUNDLER_SCOPE, cacheName } from './protocol.ts';

// The DOM and WebWorker libs cannot both be loaded in one program; declare what is used.
interface ExtendableEventLike extends Event {
  waitUntil(p: Promise<unknown>): void;
}
interface FetchEventLike extends ExtendableEventLike {
  request: Request;
  respondWith(r: Promise<Response>): void;
}
const sw = self as unknown as {
  location: Location;
  skipWaiting(): Promise<void>;
  clients: { claim(): Promise<void> };
  addEventListener(type: 'install' | 'activate', l: (e: ExtendableEventLike) => void): void;
  addEventListener(type: 'fetch', l: (e: FetchEventLike) => void): void;
};

sw.addEventListener('install', () => {
  void sw.skipWaiting();
});
sw.addEventListener('activate', (e) => {
  e.waitUntil(sw.clients.claim());
});
sw.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (url.origin !== sw.location.origin || !url.pathname.startsWith(BUNDLER_SCOPE)) return;
  const rest = url.pathname.slice(BUNDLER_SCOPE.length);
  const id = rest.split('/')[0] ?? '';
  e.respondWith(
    (async () => {
      if (!(await caches.has(cacheName(id))))
        return new Response(`preview ${id} is not running`, {
          status: 404,
          headers: { 'content-type': 'text/plain' },
        });
      const cache = await caches.open(cacheName(id));
      const path =
        rest.endsWith('/') || rest === id
          ? `${url.origin}${BUNDLER_SCOPE}${id}/`
          : `${url.origin}${url.pathname}`;
      const hit = await cache.match(path);
      if (hit) return hit;
      // Client-side routing: unknown paths without an extension get the page.
      if (!/\.[a-z0-9]+$/i.test(url.pathname)) {
        const page = await cache.match(`${url.origin}${BUNDLER_SCOPE}${id}/`);
        if (page) return page;
      }
      return new Response('not found', { status: 404, headers: { 'content-type': 'text/plain' } });
    })(),
  );
});
