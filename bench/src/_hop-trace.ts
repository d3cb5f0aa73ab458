/**
 * The e2e bench's `--trace`: epoch-ms timestamps of one edit's hops inside the bench process, where
 * the router and the pool agent run. Each line names a hop:
 * - `ws in|out <kind> <client|server> <local>-><remote>`: a sync frame (`batch`, `ack`, `hmr`)
 *   received or sent on a `ws` socket (the router's editor socket, the agent's relay, the agent's
 *   socket to the daemon);
 * - `update in|out <local>-><remote>`: bytes of Vite's HMR `update` message read from or written to
 *   a socket (the proxied HMR WebSockets are piped, not parsed);
 * - `http in|out <router|agent>` and `http ask|answer <router|agent>`: the module request arriving
 *   at / answered by the router's and the agent's servers, and their requests to the next hop.
 * Measurement only: it wraps `ws` and `net.Socket` methods of this process until `stop()`.
 */
import dc from 'node:diagnostics_channel';
import net from 'node:net';
import WebSocket from 'ws';

export interface HopTrace {
  /** The hops between `from` and `to` (epoch ms), one a line, in ms after `zero`. */
  lines(from: number, to: number, zero: number): string;
  stop(): void;
}

const now = () => performance.timeOrigin + performance.now();
const ends = (s: net.Socket | undefined) => `${s?.localPort}->${s?.remotePort}`;
/** The agent's upstream paths start with `/v1/previews/`; the preview origin's do not. */
const hopOf = (path: string, server: boolean) => (path.startsWith('/v1/') === server ? 'agent' : 'router');

/**
 * Starts recording; `module` matches the request path of the module whose fetch is followed.
 * @example
 * const trace = startHopTrace(/\/src\/App\.jsx/);
 */
export function startHopTrace(module: RegExp): HopTrace {
  const events: Array<{ at: number; what: string }> = [];
  const push = (what: string) => events.push({ at: now(), what });
  const channels: Array<[string, (m: unknown) => void]> = [
    ['http.server.request.start', (m) => http('in', (m as { request: { url: string } }).request.url, true)],
    [
      'http.server.response.finish',
      (m) => http('out', (m as { request: { url: string } }).request.url, true),
    ],
    [
      'http.client.request.start',
      (m) => http('ask', (m as { request: { path: string } }).request.path, false),
    ],
    [
      'http.client.response.finish',
      (m) => http('answer', (m as { request: { path: string } }).request.path, false),
    ],
  ];
  function http(what: string, path: string, server: boolean) {
    if (module.test(path)) push(`http ${what} ${hopOf(path, server)}`);
  }
  for (const [name, fn] of channels) dc.subscribe(name, fn);

  type WsProto = {
    emit(ev: string, ...a: unknown[]): boolean;
    send(d: unknown, ...a: unknown[]): void;
    _url?: string;
    _socket?: net.Socket;
  };
  const ws = WebSocket.prototype as unknown as WsProto;
  const { emit, send } = ws;
  const frame = (self: WsProto, dir: string, data: unknown) => {
    const kind = /"type":"(batch|ack|hmr)"/.exec(String(data).slice(0, 40))?.[1];
    if (kind) push(`ws ${dir} ${kind} ${self._url ? 'client' : 'server'} ${ends(self._socket)}`);
  };
  ws.emit = function (this: WsProto, ev: string, ...a: unknown[]) {
    if (ev === 'message') frame(this, 'in', a[0]);
    return emit.call(this, ev, ...a);
  };
  ws.send = function (this: WsProto, d: unknown, ...a: unknown[]) {
    if (typeof d === 'string' || Buffer.isBuffer(d)) frame(this, 'out', d);
    return send.call(this, d, ...a);
  };

  const sock = net.Socket.prototype as unknown as {
    push(c: unknown, e?: unknown): boolean;
    write(c: unknown, ...a: unknown[]): boolean;
  };
  const { push: read, write } = sock;
  const isUpdate = (c: unknown) => Buffer.isBuffer(c) && c.length < 8192 && c.includes('"type":"update"');
  sock.push = function (this: net.Socket, c: unknown, e?: unknown) {
    if (isUpdate(c)) push(`update in ${ends(this)}`);
    return read.call(this, c, e);
  };
  sock.write = function (this: net.Socket, c: unknown, ...a: unknown[]) {
    if (isUpdate(c)) push(`update out ${ends(this)}`);
    return write.call(this, c, ...a);
  };

  return {
    lines(from, to, zero) {
      return events
        .filter((e) => e.at >= from - 1 && e.at <= to + 1)
        .map((e) => `   ${(e.at - zero).toFixed(1).padStart(6)} ${e.what}`)
        .join('\n');
    },
    stop() {
      for (const [name, fn] of channels) dc.unsubscribe(name, fn);
      ws.emit = emit;
      ws.send = send;
      sock.push = read;
      sock.write = write;
    },
  };
}
