import { Agent as HttpAgent, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.ts';

/** Where one request goes and how its headers change on the way. */
export interface ProxyTarget {
  /** The upstream's origin, `http://127.0.0.1:32768` or `https://app.fly.dev`. */
  origin: string;
  /** Path and query to ask the upstream for. @default the request's own `req.url` */
  path?: string;
  /**
   * Headers to set on the forwarded request after hop-by-hop headers and our hop credentials were
   * removed (`undefined` removes one). Applied last, so a caller's rule wins.
   */
  headers?: Record<string, string | string[] | undefined>;
  /** Keep our hop credentials (`x-agent-token`): only for the hop that sends them on purpose. @default false */
  keepCredentials?: boolean;
  /** Called when the upstream cannot be reached; the proxy already answered or closed the client. */
  onError?: (err: Error) => void;
}

/** Per-request choices for an HTTP request. */
export interface WebTarget extends ProxyTarget {
  /** Rewrites each `Set-Cookie` line of the answer (the preview proxy's cross-site rule). */
  setCookie?: (line: string) => string;
  /**
   * HTML put right after `<head>` of an uncompressed `text/html` answer up to 2 MiB (the preview's
   * activity client). Other answers stream through untouched.
   */
  injectHtml?: string;
  /** The answer when the upstream cannot be reached before anything was sent. @default 502 text */
  errorResponse?: (res: ServerResponse, err: Error) => void;
}

/** One reverse proxy for HTTP and WebSocket: streams both ways over kept-alive upstream connections. */
export interface ReverseProxy {
  /** Forwards one HTTP request and streams the answer back (status, headers, body as the upstream sent them). */
  web(req: IncomingMessage, res: ServerResponse, target: WebTarget): void;
  /** Forwards a WebSocket upgrade and pipes both sockets; a refused upgrade's answer is relayed as is. */
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, target: ProxyTarget): void;
  /** Closes every idle kept-alive upstream connection. */
  close(): void;
}

const MAX_INJECT_BYTES = 2 * 1024 * 1024;

/**
 * The project's one reverse proxy (router preview host, pool agent upstream, preview-daemon child
 * server), on `http-proxy-3`. Request headers lose the hop-by-hop headers and our hop credentials
 * (see `headers.ts`); `Host`, cookies and every other header pass as they came unless the caller's
 * `target.headers` says otherwise. No `X-Forwarded-*` is added here: only the edge knows the browser.
 *
 * @example
 * const proxy = createReverseProxy();
 * server.on('request', (req, res) => proxy.web(req, res, { origin: 'http://127.0.0.1:5173' }));
 * server.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head, { origin: 'http://127.0.0.1:5173' }));
 */
export function createReverseProxy(o: { maxSocketsPerHost?: number } = {}): ReverseProxy {
  const maxSockets = o.maxSocketsPerHost ?? 256;
  // Kept-alive connections: a proxied request pays no TCP handshake; LIFO keeps few sockets warm.
  const httpAgent = new HttpAgent({ keepAlive: true, maxSockets, maxFreeSockets: 32, scheduling: 'lifo' });
  const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets, maxFreeSockets: 32, scheduling: 'lifo' });
  const server = createProxyServer({ xfwd: false, ignorePath: true, selfHandleResponse: true });
  const webTargets = new WeakMap<IncomingMessage, WebTarget>();
  server.on('proxyRes', (proxyRes, req, res) => {
    const t = webTargets.get(req);
    webTargets.delete(req);
    respond(proxyRes, req, res, t ?? { origin: '' });
  });
  // Without a listener an error event would throw; each call passes its own callback.
  server.on('error', () => {});
  server.on('econnreset', () => {});

  const urlOf = (t: ProxyTarget, req: IncomingMessage) =>
    `${t.origin.replace(/\/$/, '')}${t.path ?? req.url ?? '/'}`;
  const setHeaders = (req: IncomingMessage, t: ProxyTarget, upgrade: boolean) => {
    const h = forwardRequestHeaders(req.headers, { upgrade, keepCredentials: t.keepCredentials ?? false });
    for (const [k, v] of Object.entries(t.headers ?? {})) {
      if (v === undefined) delete h[k];
      else h[k] = v;
    }
    req.headers = h;
  };

  return {
    web(req, res, t) {
      setHeaders(req, t, false);
      webTargets.set(req, t);
      const url = urlOf(t, req);
      server.web(
        req,
        res,
        { target: url, agent: url.startsWith('https:') ? httpsAgent : httpAgent },
        (err: Error) => {
          webTargets.delete(req);
          t.onError?.(err);
          if (res.headersSent) return void res.destroy();
          if (t.errorResponse) return t.errorResponse(res, err);
          res
            .writeHead(502, { 'content-type': 'text/plain; charset=utf-8' })
            .end(`upstream: ${err.message}\n`);
        },
      );
    },
    ws(req, socket, head, t) {
      setHeaders(req, t, true);
      socket.on('error', () => {});
      // No pooled agent for upgrades: the connection becomes the socket's for good.
      server.ws(req, socket, head, { target: urlOf(t, req), agent: false }, (err: Error) => {
        t.onError?.(err);
      });
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
      server.close();
    },
  };
}

function respond(proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse, t: WebTarget): void {
  const headers = forwardResponseHeaders(proxyRes.headers);
  const cookies = headers['set-cookie'];
  if (t.setCookie && Array.isArray(cookies)) headers['set-cookie'] = cookies.map(t.setCookie);
  const status = proxyRes.statusCode ?? 502;
  const injectable =
    t.injectHtml !== undefined &&
    req.method === 'GET' &&
    status === 200 &&
    !headers['content-encoding'] &&
    /^text\/html/i.test(String(headers['content-type'] ?? '')) &&
    Number(headers['content-length'] ?? 0) <= MAX_INJECT_BYTES;
  if (!injectable) {
    res.writeHead(status, proxyRes.statusMessage, headers);
    proxyRes.pipe(res);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const passThrough = () => {
    proxyRes.removeListener('data', onData);
    proxyRes.removeListener('end', onEnd);
    res.writeHead(status, proxyRes.statusMessage, headers);
    for (const c of chunks) res.write(c);
    proxyRes.pipe(res);
  };
  const onData = (c: Buffer) => {
    chunks.push(c);
    size += c.length;
    if (size > MAX_INJECT_BYTES) passThrough();
  };
  const onEnd = () => {
    const body = injectAfterHead(Buffer.concat(chunks).toString('utf8'), t.injectHtml!);
    headers['content-length'] = String(Buffer.byteLength(body));
    res.writeHead(status, proxyRes.statusMessage, headers).end(body);
  };
  proxyRes.on('data', onData);
  proxyRes.on('end', onEnd);
  proxyRes.on('error', () => res.destroy());
}

/** `html` with `snippet` right after its `<head>` tag (or first, for a document without one). */
export function injectAfterHead(html: string, snippet: string): string {
  const m = /<head(?:\s[^>]*)?>/i.exec(html);
  if (m) return `${html.slice(0, m.index + m[0].length)}${snippet}${html.slice(m.index + m[0].length)}`;
  const doctype = /^\s*<!doctype[^>]*>/i.exec(html);
  if (doctype) return `${doctype[0]}${snippet}${html.slice(doctype[0].length)}`;
  return `${snippet}${html}`;
}
