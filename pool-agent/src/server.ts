import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { getRequestListener } from '@hono/node-server';
import { NotFoundError, UnauthorizedError } from '@preview/tiers';
import type { Hono } from 'hono';
import type { TokenSet } from './auth.ts';
import type { PreviewRecord } from './previews.ts';
import { failResponse, rejectUpgrade, UpstreamProxy } from './upstream-proxy.ts';

/** `/v1/previews/:id/http/<path>`: the preview upstream the router's proxy forwards to. */
const UPSTREAM_RE = /^\/v1\/previews\/([a-zA-Z0-9_-]{1,64})\/http(\/[^?]*)?(\?.*)?$/;
/** `/v1/previews/:id/sync`: the sync relay to the preview's daemon. */
const SYNC_RE = /^\/v1\/previews\/([a-zA-Z0-9_-]{1,64})\/sync(\?.*)?$/;

export interface AgentServerOptions {
  host: string;
  /** 0: any free port (read it back from `url`). */
  port: number;
  /** The API (every other route). */
  app: Hono;
  tokens: TokenSet;
  /** The preview that may take traffic now; throws NotFound / Conflict as the answer. */
  routable(previewId: string): PreviewRecord;
}

/** The agent's listening server, once it listens. */
export interface AgentServer {
  /** `http://host:port` (`127.0.0.1` when listening on every address). */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves the API, the preview upstream (HTTP and WebSocket upgrades, authenticated like the API) and
 * the sync relay (whose token may also come as `?token=`, since browsers cannot set headers on a
 * WebSocket).
 *
 * @example
 * const server = await startAgentServer({ host: '127.0.0.1', port: 0, app, tokens, routable });
 * server.url; // http://127.0.0.1:41234
 */
export async function startAgentServer(o: AgentServerOptions): Promise<AgentServer> {
  const proxy = new UpstreamProxy();
  const api = getRequestListener(o.app.fetch);
  const server: Server = createServer((req, res) => {
    const m = UPSTREAM_RE.exec(req.url ?? '/');
    if (!m) return void api(req, res);
    if (!o.tokens.accepts(req.headers))
      return failResponse(res, new UnauthorizedError('unauthorized', 'missing or invalid bearer token'));
    let p: PreviewRecord;
    try {
      p = o.routable(m[1]!);
    } catch (e) {
      return failResponse(res, e);
    }
    proxy.http(req, res, p.box.upstream, `${m[2] ?? '/'}${m[3] ?? ''}`);
  });

  // Upgraded sockets are not closed by server.closeAllConnections(); track them for close().
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req, socket, head) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    const url = req.url ?? '/';
    const sync = SYNC_RE.exec(url);
    const upm = sync ? undefined : UPSTREAM_RE.exec(url);
    const query = new URL(url, 'http://x').searchParams.get('token');
    if (!o.tokens.accepts(req.headers, sync ? query : null))
      return rejectUpgrade(socket, new UnauthorizedError('unauthorized', 'missing or invalid bearer token'));
    let p: PreviewRecord;
    try {
      if (!sync && !upm) throw new NotFoundError('not_found', `no WebSocket route ${url.split('?')[0]}`);
      p = o.routable((sync ?? upm)![1]!);
    } catch (e) {
      return rejectUpgrade(socket, e);
    }
    if (sync)
      return proxy.relaySync(
        { upstream: p.box.upstream, daemonToken: p.box.daemonToken, relays: p.relays },
        req,
        socket,
        head,
      );
    proxy.upgrade(req, socket, head, p.box.upstream, `${upm![2] ?? '/'}${upm![3] ?? ''}`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`,
    async close() {
      proxy.close();
      for (const s of upgraded) s.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
