import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { previewIdFromHost } from './preview-host.ts';
import { type ProxyContext, targetOf } from './proxy-http.ts';
import type { Route } from './routing-cache.ts';

/**
 * A WebSocket upgrade for a preview origin: `false` when the Host is not one. Otherwise it is
 * answered `true` at once and, asynchronously, refused (401 no access, 404 no such preview, 503 not
 * ready or suspended: a socket does not wake a preview) or piped to the upstream.
 */
export function proxyUpgrade(
  ctx: Pick<ProxyContext, 'domain' | 'access' | 'metrics' | 'reverse' | 'edge' | 'log'>,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): boolean {
  const { access, metrics } = ctx;
  const id = previewIdFromHost(req.headers.host, ctx.domain);
  if (!id) return false;
  const reject = (status: number, text: string) => {
    metrics.proxyRequests.inc({ kind: 'ws', outcome: String(status) });
    socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  };
  socket.on('error', () => {});
  void (async () => {
    let r: Route | undefined;
    try {
      r = await access.authorize(id, req.headers.cookie);
    } catch {
      return reject(401, 'Unauthorized');
    }
    if (!r) return reject(404, 'Not Found');
    // A socket (HMR, the app's own) does not wake a suspended preview: a page view or a ping does.
    if (r.session.state === 'suspended') return reject(503, 'Service Unavailable');
    r = await access.wake(r, id).catch(() => undefined);
    if (r?.session.state !== 'ready' || !r.upstream) return reject(503, 'Service Unavailable');
    metrics.proxyRequests.inc({ kind: 'ws', outcome: 'proxied' });
    const { nodeId, tier } = r.session;
    ctx.reverse.ws(req, socket, head, {
      ...targetOf(r, req, ctx.edge),
      onError: (err) => ctx.log.warn({ err, previewId: id, nodeId, tier }, 'upstream upgrade failed'),
    });
  })().catch((err) => {
    ctx.log.warn({ err, previewId: id }, 'upgrade failed');
    reject(500, 'Internal Server Error');
  });
  return true;
}
