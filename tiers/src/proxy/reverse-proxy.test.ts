import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { crossSiteCookie, forwardRequestHeaders, withoutCookie } from './headers.ts';
import { createReverseProxy, injectAfterHead, type ReverseProxy } from './reverse-proxy.ts';

const closers: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const listen = async (s: Server) => {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        s.closeAllConnections();
        s.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
};

/** An upstream that echoes what it got (headers, path, body) and counts its connections. */
async function echoUpstream() {
  const seen = { connections: 0, last: {} as IncomingHttpHeaders };
  const s = createServer((req, res) => {
    seen.last = req.headers;
    const body: Buffer[] = [];
    req.on('data', (c) => body.push(c));
    req.on('end', () => {
      if (req.url === '/page') {
        res.writeHead(200, { 'content-type': 'text/html', 'set-cookie': ['sid=1; Path=/; SameSite=Lax'] });
        return void res.end('<!doctype html><html><head><title>t</title></head><body>x</body></html>');
      }
      res.writeHead(200, {
        'content-type': 'application/json',
        connection: 'keep-alive, x-private',
        'x-private': 'hop',
        'keep-alive': 'timeout=77',
      });
      res.end(JSON.stringify({ url: req.url, headers: req.headers, body: Buffer.concat(body).toString() }));
    });
  });
  s.on('connection', () => seen.connections++);
  const wss = new WebSocketServer({ noServer: true });
  s.on('upgrade', (req, socket, head) => {
    if (req.url === '/refuse') {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ cookie: req.headers.cookie ?? null, host: req.headers.host }));
      ws.on('message', (m) => ws.send(`echo:${m}`));
    });
  });
  closers.push(() => wss.close());
  return { origin: await listen(s), seen };
}

/** A front server that sends everything to `origin` through `proxy`. */
async function front(
  proxy: ReverseProxy,
  origin: string,
  extra: Parameters<ReverseProxy['web']>[2] = { origin },
) {
  const s = createServer((req, res) => proxy.web(req, res, { ...extra, origin }));
  s.on('upgrade', (req, socket, head) => proxy.ws(req, socket, head, { origin }));
  return await listen(s);
}

function send(url: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const u = new URL(url);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: o.method ?? 'GET',
        headers: o.headers,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

describe('header rules', () => {
  it('drops hop-by-hop headers, the headers Connection names and our hop credential; keeps Host and cookies', () => {
    const out = forwardRequestHeaders(
      {
        host: 'a.preview.localhost',
        connection: 'keep-alive, x-hop',
        'x-hop': '1',
        'keep-alive': 'timeout=77',
        'proxy-authorization': 'Basic x',
        te: 'trailers',
        upgrade: 'h2c',
        'x-agent-token': 'secret',
        cookie: 'a=1',
        authorization: 'Bearer app',
      },
      { upgrade: false },
    );
    expect(out).toEqual({ host: 'a.preview.localhost', cookie: 'a=1', authorization: 'Bearer app' });
    const ws = forwardRequestHeaders(
      { connection: 'Upgrade', upgrade: 'websocket', cookie: 'a=1' },
      { upgrade: true },
    );
    expect(ws).toEqual({ connection: 'Upgrade', upgrade: 'websocket', cookie: 'a=1' });
  });

  it('removes only the named cookie', () => {
    expect(withoutCookie('a=1; __preview_access=t; b=2', '__preview_access')).toBe('a=1; b=2');
    expect(withoutCookie('__preview_access=t', '__preview_access')).toBeUndefined();
    expect(withoutCookie('x__preview_access=1', '__preview_access')).toBe('x__preview_access=1');
  });

  it('makes an app cookie work in a cross-site frame, keeping its other attributes', () => {
    expect(crossSiteCookie('sid=1; Path=/app; SameSite=Strict; HttpOnly; Max-Age=60')).toBe(
      'sid=1; Path=/app; HttpOnly; Max-Age=60; SameSite=None; Secure; Partitioned',
    );
  });

  it('injects after <head>, or after the doctype when there is none', () => {
    expect(injectAfterHead('<html><HEAD lang="x"><title>', '<s>')).toBe('<html><HEAD lang="x"><s><title>');
    expect(injectAfterHead('<!doctype html><p>', '<s>')).toBe('<!doctype html><s><p>');
  });
});

describe('createReverseProxy', () => {
  it('streams a request and its answer, strips hop headers both ways, reuses the upstream connection', async () => {
    const up = await echoUpstream();
    const proxy = createReverseProxy();
    closers.push(() => proxy.close());
    const url = await front(proxy, up.origin);
    const a = await send(`${url}/x?y=1`, {
      method: 'POST',
      headers: { host: 'app.example', cookie: 'a=1', 'x-agent-token': 't', 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(a.status).toBe(200);
    const seen = JSON.parse(a.body);
    expect(seen.url).toBe('/x?y=1');
    expect(seen.body).toBe('hello');
    expect(seen.headers.host).toBe('app.example');
    expect(seen.headers.cookie).toBe('a=1');
    expect(seen.headers['x-agent-token']).toBeUndefined();
    expect(a.headers['x-private']).toBeUndefined();
    expect(a.headers['keep-alive']).not.toBe('timeout=77');
    await send(`${url}/again`);
    expect(up.seen.connections).toBe(1);
  });

  it('rewrites Set-Cookie and injects into HTML when asked', async () => {
    const up = await echoUpstream();
    const proxy = createReverseProxy();
    closers.push(() => proxy.close());
    const url = await front(proxy, up.origin, {
      origin: '',
      setCookie: crossSiteCookie,
      injectHtml: '<script src="/a.js"></script>',
    });
    const r = await send(`${url}/page`);
    expect(r.headers['set-cookie']).toEqual(['sid=1; Path=/; SameSite=None; Secure; Partitioned']);
    expect(r.body).toContain('<head><script src="/a.js"></script><title>');
    expect(Number(r.headers['content-length'])).toBe(Buffer.byteLength(r.body));
  });

  it('proxies a WebSocket upgrade with its cookies, and relays a refused one', async () => {
    const up = await echoUpstream();
    const proxy = createReverseProxy();
    closers.push(() => proxy.close());
    const url = await front(proxy, up.origin);
    const ws = new WebSocket(`${url.replace('http', 'ws')}/socket`, {
      headers: { cookie: 'app=2', host: 'app.example' },
    });
    const first = await new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
    expect(JSON.parse(first)).toEqual({ cookie: 'app=2', host: 'app.example' });
    ws.send('ping');
    expect(await new Promise<string>((r) => ws.once('message', (m) => r(String(m))))).toBe('echo:ping');
    ws.close();
    const refused = new WebSocket(`${url.replace('http', 'ws')}/refuse`);
    const status = await new Promise<number>((r) =>
      refused.on('unexpected-response', (_q, res) => r(res.statusCode ?? 0)),
    );
    expect(status).toBe(403);
  });

  it('answers 502 and reports the error when the upstream does not answer', async () => {
    const dead = createServer();
    const origin = await listen(dead);
    await new Promise<void>((r) => dead.close(() => r()));
    const proxy = createReverseProxy();
    closers.push(() => proxy.close());
    const errors: Error[] = [];
    const s = createServer((req, res) => proxy.web(req, res, { origin, onError: (e) => errors.push(e) }));
    const url = await listen(s);
    const r = await send(`${url}/`);
    expect(r.status).toBe(502);
    expect(errors[0]?.message).toMatch(/ECONNREFUSED/);
  });
});
