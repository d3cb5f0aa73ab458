import {
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCodes, LIMITS, PreviewError } from '@preview/tiers';
import WebSocket, { WebSocketServer } from 'ws';
import { openDaemonSocket } from './daemon-client.ts';
import { errorBody, statusOf } from './http-errors.ts';

/** Hop-by-hop headers and the agent's own credential: never forwarded to a sandbox. */
export const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'x-agent-token',
]);

/** Where a preview's traffic goes: the sandbox's daemon port and its sync credentials. */
export interface UpstreamTarget {
  /** `http://127.0.0.1:<port>` of the sandbox's daemon. */
  upstream: string;
  daemonToken: string;
  /** Open sync relays to this sandbox (closed by the agent when the preview ends). */
  relays: Set<WebSocket>;
}

/** The headers the sandbox sees: hop-by-hop headers removed, and the router's credential. */
export function upstreamHeaders(h: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  // When the router authenticated with x-agent-token, the app's own Authorization passes through.
  const stripAuth = h['x-agent-token'] === undefined;
  for (const [k, v] of Object.entries(h))
    if (!HOP.has(k) && !(stripAuth && k === 'authorization')) out[k] = v;
  return out;
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
  // Kept-alive connections to the sandboxes' published ports: no handshake per proxied request.
  readonly #agent = new HttpAgent({ keepAlive: true, maxSockets: 64, maxFreeSockets: 8 });
  readonly #wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: LIMITS.frameBytes,
  });

  /** Forwards one HTTP request to `upstream` at `path` and streams the answer back. */
  http(req: IncomingMessage, res: ServerResponse, upstream: string, path: string): void {
    const up = new URL(upstream);
    const preq = httpRequest(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path,
        headers: upstreamHeaders(req.headers),
        agent: this.#agent,
      },
      (pres) => {
        const headers = { ...pres.headers };
        delete headers['connection'];
        delete headers['keep-alive'];
        res.writeHead(pres.statusCode ?? 502, headers);
        pres.pipe(res);
      },
    );
    preq.on('error', (e) =>
      failResponse(res, new PreviewError('upstream_error', `preview upstream: ${e.message}`)),
    );
    req.pipe(preq);
  }

  /** Forwards a WebSocket upgrade (the app's own sockets, Vite's HMR) and pipes both ways. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, upstream: string, path: string): void {
    const up = new URL(upstream);
    const headers = upstreamHeaders(req.headers);
    headers['connection'] = 'Upgrade';
    headers['upgrade'] = req.headers['upgrade'] ?? 'websocket';
    const preq = httpRequest({ host: up.hostname, port: up.port, method: req.method, path, headers });
    preq.on('upgrade', (pres, psocket, phead) => {
      let out = `HTTP/1.1 ${pres.statusCode} ${pres.statusMessage}\r\n`;
      for (let i = 0; i < pres.rawHeaders.length; i += 2)
        out += `${pres.rawHeaders[i]}: ${pres.rawHeaders[i + 1]}\r\n`;
      socket.write(`${out}\r\n`);
      if (phead.length) socket.write(phead);
      if (head.length) psocket.write(head);
      psocket.pipe(socket).pipe(psocket);
      psocket.on('error', () => socket.destroy());
      socket.on('error', () => psocket.destroy());
      psocket.on('close', () => socket.destroy());
      socket.on('close', () => psocket.destroy());
    });
    preq.on('response', (pres) => {
      // The upstream refused the upgrade: pass its answer on.
      let out = `HTTP/1.1 ${pres.statusCode} ${pres.statusMessage}\r\n`;
      for (let i = 0; i < pres.rawHeaders.length; i += 2)
        out += `${pres.rawHeaders[i]}: ${pres.rawHeaders[i + 1]}\r\n`;
      socket.write(`${out}\r\n`);
      pres.pipe(socket);
    });
    preq.on('error', (e) =>
      rejectUpgrade(socket, new PreviewError('upstream_error', `preview upstream: ${e.message}`)),
    );
    preq.end();
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
    this.#agent.destroy();
  }
}
