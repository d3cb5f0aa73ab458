import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCodes, LIMITS, PreviewError } from '@preview/tiers';
import { createReverseProxy, type ProxyTarget } from '@preview/tiers/proxy';
import WebSocket, { WebSocketServer } from 'ws';
import { openDaemonSocket } from './daemon-client.ts';
import { errorBody, statusOf } from './http-errors.ts';

/** Where a preview's traffic goes: the sandbox's daemon port and its sync credentials. */
export interface UpstreamTarget {
  /** `http://127.0.0.1:<port>` of the sandbox's daemon. */
  upstream: string;
  daemonToken: string;
  /** Open sync relays to this sandbox (closed by the agent when the preview ends). */
  relays: Set<WebSocket>;
}

/**
 * How a request to the agent's upstream reaches the sandbox: at `path`, with the shared proxy's
 * header rules (hop-by-hop headers and the router's `x-agent-token` removed). When the router
 * authenticated with `x-agent-token` the app's own `Authorization` passes through; when it
 * authenticated with `Authorization` (an agent token), that credential stays here.
 */
function sandboxTarget(req: IncomingMessage, upstream: string, path: string): ProxyTarget {
  const routerAuth = req.headers['x-agent-token'] === undefined;
  return { origin: upstream, path, ...(routerAuth ? { headers: { authorization: undefined } } : {}) };
}

/** Answers `e` as `{error:{code,message}}` (or drops the connection when the answer already started). */
export function failResponse(res: ServerResponse, e: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(statusOf(e), { 'content-type': 'application/json' }).end(JSON.stringify(errorBody(e)));
}

/** Refuses a WebSocket upgrade with `e` as a JSON HTTP answer. */
export function rejectUpgrade(socket: Duplex, e: unknown): void {
  const status = statusOf(e);
  const body = JSON.stringify(errorBody(e));
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * The agent's preview upstream: HTTP requests and WebSocket upgrades forwarded to a sandbox's daemon
 * port over kept-alive connections, and the sync socket relayed to the daemon unparsed.
 *
 * @example
 * const proxy = new UpstreamProxy();
 * proxy.http(req, res, 'http://127.0.0.1:32768', '/src/main.js');
 */
export class UpstreamProxy {
  // The project's one reverse proxy, with kept-alive connections to the sandboxes' published ports.
  readonly #proxy = createReverseProxy({ maxSocketsPerHost: 64 });
  readonly #wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: LIMITS.frameBytes,
  });

  /** Forwards one HTTP request to `upstream` at `path` and streams the answer back. */
  http(req: IncomingMessage, res: ServerResponse, upstream: string, path: string): void {
    this.#proxy.web(req, res, {
      ...sandboxTarget(req, upstream, path),
      errorResponse: (r, e) =>
        failResponse(r, new PreviewError('upstream_error', `preview upstream: ${e.message}`)),
    });
  }

  /** Forwards a WebSocket upgrade (the app's own sockets, Vite's HMR) and pipes both ways. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, upstream: string, path: string): void {
    this.#proxy.ws(req, socket, head, sandboxTarget(req, upstream, path));
  }

  /** Relays sync frames both ways without parsing them: the daemon validates. */
  relaySync(target: UpstreamTarget, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#wss.handleUpgrade(req, socket, head, (client) => {
      const daemon = openDaemonSocket(target.upstream, target.daemonToken);
      target.relays.add(client);
      const pending: { data: WebSocket.RawData; binary: boolean }[] = [];
      client.on('message', (data, binary) => {
        if (daemon.readyState === WebSocket.OPEN) daemon.send(data, { binary });
        else pending.push({ data, binary });
      });
      daemon.on('open', () => {
        for (const m of pending.splice(0)) daemon.send(m.data, { binary: m.binary });
      });
      daemon.on('message', (data, binary) => {
        if (client.readyState !== WebSocket.OPEN) return;
        // A consumer that stopped reading: drop it (it reconnects and replays) rather than buffer without end.
        if (client.bufferedAmount > 8 * 1024 * 1024) {
          client.close(CloseCodes.slowConsumer, 'slow consumer');
          return;
        }
        client.send(data, { binary });
      });
      const closeCode = (c: number) => (c >= 4000 || c === 1000 || c === 1001 ? c : 1011);
      daemon.on('close', (code, reason) => {
        if (client.readyState <= WebSocket.OPEN) client.close(closeCode(code), reason.toString());
      });
      daemon.on('error', () => {
        if (client.readyState <= WebSocket.OPEN) client.close(1011, 'preview daemon unreachable');
      });
      client.on('close', () => {
        target.relays.delete(client);
        if (daemon.readyState <= WebSocket.OPEN) daemon.close();
      });
      client.on('error', () => daemon.terminate());
    });
  }

  /** Drops every relay and kept-alive connection. */
  close(): void {
    for (const c of this.#wss.clients) c.terminate();
    this.#proxy.close();
  }
}
