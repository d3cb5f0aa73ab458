import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { LIVE_STATES, type Placement, TimeoutError, UnauthorizedError } from '@preview/tiers';
import type { Context } from 'hono';
import type { Logger } from 'pino';
import type { AccessTokens } from '../auth/access-token.ts';
import type { Metrics } from '../metrics.ts';
import type { PreviewService } from '../previews.ts';
import { sseForPreview } from '../sse.ts';
import type { Session } from '../store/sessions.ts';
import { ACCESS_COOKIE, accessCookie, previewIdFromHost, readCookie } from './preview-host.ts';
import { type StatusKind, statusPage } from './status-page.ts';

export interface PreviewHostHandler {
  /** A response for a preview-origin request, or `undefined` when `c` is not for a preview origin. */
  handle(c: Context, clientIp: string): Promise<Response | undefined>;
  /** Takes a WebSocket upgrade for a preview origin; returns false if the Host is not one. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
}

/** Where a placement's HTTP traffic goes, and the headers that route it there. */
export function upstreamOf(
  p: Placement | null,
): { url: string; headers: Record<string, string> } | undefined {
  if (!p) return undefined;
  switch (p.tier) {
    case 'docker':
      return { url: p.upstream, headers: {} };
    case 'fly':
      return { url: p.upstream, headers: { 'fly-force-instance-id': p.instanceId } };
    case 'browser':
      return undefined;
  }
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
]);

/**
 * The preview proxy: `<id>.<domain>` → the placement's upstream, HTTP (streamed) and WebSocket
 * upgrades through the same Host parsing and cookie check. Serves the status page while the preview
 * is not ready, wakes suspended previews, and turns `?token=` into the origin's HttpOnly cookie.
 */
export function createPreviewProxy(o: {
  previews: PreviewService;
  accessTokens: AccessTokens;
  domain: string;
  scheme: 'http' | 'https';
  cookieTtlMs: number;
  wakeWaitMs: number;
  metrics: Metrics;
  log: Logger;
  /** The token a docker node's agent accepts (sent as `x-agent-token`, so the app's own Authorization passes through). */
  agentToken?: (nodeId: string) => Promise<string | undefined>;
}): PreviewHostHandler {
  const { previews, accessTokens, metrics } = o;
  const store = previews.store;
  const secureContext = o.scheme === 'https' || o.domain === 'localhost' || o.domain.endsWith('.localhost');
  const lastView = new Map<string, number>();

  const authorize = async (
    id: string,
    cookieHeader: string | undefined | null,
  ): Promise<Session | undefined> => {
    const token = readCookie(cookieHeader, ACCESS_COOKIE);
    if (!token) throw new UnauthorizedError('unauthorized', 'no preview access cookie');
    const { userId } = await accessTokens.verify(token, { previewId: id, kind: 'cookie' });
    const s = await store.get(id);
    return s && s.userId === userId ? s : undefined;
  };

  const page = async (
    s: Session | undefined,
    id: string,
    kind: StatusKind,
    status: number,
    message?: string,
  ) => {
    const log = s ? await previews.events.lastLogLines(id).catch(() => []) : [];
    const live = !!s && LIVE_STATES.includes(s.state) && kind !== 'browser';
    return new Response(statusPage({ kind, previewId: id, message, log, live }), {
      status,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'x-preview-status': kind,
        ...(status === 503 ? { 'retry-after': '2' } : {}),
      },
    });
  };

  const resolveUpstream = async (s: Session) => {
    const up = upstreamOf(s.placement);
    if (up && s.placement?.tier === 'docker' && o.agentToken) {
      const token = await o.agentToken(s.placement.nodeId);
      if (token) up.headers['x-agent-token'] = token;
    }
    return up;
  };
  const join = (base: string, pathAndQuery: string) => new URL(`${base.replace(/\/$/, '')}${pathAndQuery}`);

  const kindOf = async (s: Session): Promise<StatusKind> => {
    if (s.state === 'failed') return 'error';
    if (s.state === 'ended' || s.state === 'stopping') return 'ended';
    if (s.tier === 'browser') return 'browser';
    if (s.state === 'suspended') return 'waking';
    if (s.state === 'queued' || s.state === 'provisioning' || s.state === 'migrating') return 'queued';
    const recent = await previews.events.recent(s.id, 20);
    const phase = [...recent].reverse().find((e) => e.type === 'status');
    if (phase?.type === 'status' && phase.phase === 'installing') return 'installing';
    if (phase?.type === 'status' && phase.phase === 'error') return 'error';
    return 'compiling';
  };

  const noteView = (c: Context, id: string) => {
    // Only human page views count as activity: not HMR sockets, assets or health probes.
    const dest = c.req.header('sec-fetch-dest');
    const isDoc = dest
      ? dest === 'document' || dest === 'iframe'
      : (c.req.header('accept') ?? '').includes('text/html');
    if (!isDoc || c.req.path.startsWith('/__preview/')) return;
    const now = Date.now();
    if ((lastView.get(id) ?? 0) > now - 30_000) return;
    lastView.set(id, now);
    void store.touch(id, 'view').catch(() => {});
  };

  return {
    async handle(c) {
      const id = previewIdFromHost(c.req.header('host'), o.domain);
      if (!id) return undefined;
      const url = new URL(c.req.url);
      const link = url.searchParams.get('token');
      if (link) {
        try {
          const { userId } = await accessTokens.verify(link, { previewId: id, kind: 'link' });
          const cookie = await accessTokens.sign({
            previewId: id,
            userId,
            kind: 'cookie',
            ttlMs: o.cookieTtlMs,
          });
          url.searchParams.delete('token');
          metrics.proxyRequests.inc({ kind: 'http', outcome: 'token_exchanged' });
          return new Response(null, {
            status: 302,
            headers: {
              location: `${url.pathname}${url.search}`,
              'set-cookie': accessCookie(cookie, {
                maxAgeS: Math.floor(o.cookieTtlMs / 1000),
                secureContext,
              }),
              'cache-control': 'no-store',
            },
          });
        } catch {
          return await page(
            undefined,
            id,
            'unauthorized',
            401,
            'The preview link expired: reopen it from the editor.',
          );
        }
      }
      let s: Session | undefined;
      try {
        s = await authorize(id, c.req.header('cookie'));
      } catch {
        metrics.proxyRequests.inc({ kind: 'http', outcome: 'unauthorized' });
        return await page(undefined, id, 'unauthorized', 401);
      }
      if (!s) return await page(undefined, id, 'not_found', 404);
      if (url.pathname === '/__router/events') return (await sseForPreview(c, previews, s)) as Response;

      if (s.state === 'suspended') {
        await previews.resumeSession(s);
        try {
          s = await previews.waitReady(id, o.wakeWaitMs);
        } catch (e) {
          if (!(e instanceof TimeoutError)) throw e;
          return await page(s, id, 'waking', 503);
        }
      }
      // Any replica serving a starting preview tracks its readiness (the creating one may be gone).
      if (s.state === 'starting') previews.watchReadiness(s.id);
      if (s.state !== 'ready' || s.tier === 'browser') {
        const kind = await kindOf(s);
        return await page(s, id, kind, kind === 'browser' ? 200 : 503, s.error ?? undefined);
      }
      const up = await resolveUpstream(s);
      if (!up) return await page(s, id, 'error', 502, 'no upstream for this placement');
      noteView(c, id);
      const target = join(up.url, `${url.pathname}${url.search}`);
      const headers = new Headers();
      c.req.raw.headers.forEach((v, k) => {
        if (!HOP_BY_HOP.has(k) && k !== 'cookie' && k !== 'accept-encoding') headers.set(k, v);
      });
      // Forward cookies except our own access cookie (the app never sees router credentials).
      const cookies = (c.req.header('cookie') ?? '')
        .split(';')
        .filter((p) => p.trim() && !p.trim().startsWith(`${ACCESS_COOKIE}=`))
        .join(';');
      if (cookies) headers.set('cookie', cookies);
      headers.set('x-forwarded-host', c.req.header('host') ?? '');
      headers.set('x-forwarded-proto', o.scheme);
      // Decoded bodies only: fetch would decompress but keep content-encoding otherwise.
      headers.set('accept-encoding', 'identity');
      for (const [k, v] of Object.entries(up.headers)) headers.set(k, v);
      try {
        const method = c.req.method;
        const res = await fetch(target, {
          method,
          headers,
          body: method === 'GET' || method === 'HEAD' ? undefined : c.req.raw.body,
          redirect: 'manual',
          // @ts-expect-error undici needs duplex for streamed request bodies
          duplex: 'half',
        });
        metrics.proxyRequests.inc({ kind: 'http', outcome: String(res.status) });
        const out = new Headers(res.headers);
        out.delete('content-encoding');
        out.delete('content-length');
        out.delete('transfer-encoding');
        out.delete('connection');
        return new Response(res.body, { status: res.status, statusText: res.statusText, headers: out });
      } catch (err) {
        o.log.warn({ err, previewId: id }, 'upstream request failed');
        metrics.proxyRequests.inc({ kind: 'http', outcome: 'upstream_error' });
        return await page(s, id, 'error', 502, 'the preview did not answer');
      }
    },

    upgrade(req, socket, head) {
      const id = previewIdFromHost(req.headers.host, o.domain);
      if (!id) return false;
      const reject = (status: number, text: string) => {
        metrics.proxyRequests.inc({ kind: 'ws', outcome: String(status) });
        socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      };
      socket.on('error', () => {});
      void (async () => {
        let s: Session | undefined;
        try {
          s = await authorize(id, req.headers.cookie);
        } catch {
          return reject(401, 'Unauthorized');
        }
        if (!s) return reject(404, 'Not Found');
        if (s.state === 'suspended') {
          await previews.resumeSession(s);
          s = await previews.waitReady(id, o.wakeWaitMs).catch(() => undefined);
        }
        if (s?.state !== 'ready') return reject(503, 'Service Unavailable');
        const up = await resolveUpstream(s);
        if (!up) return reject(502, 'Bad Gateway');
        const target = join(up.url, req.url ?? '/');
        const headers: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(req.headers)) {
          if (v === undefined || k === 'host' || k === 'cookie') continue;
          headers[k] = v;
        }
        headers['host'] = target.host;
        headers['x-forwarded-host'] = req.headers.host ?? '';
        Object.assign(headers, up.headers);
        const mod = target.protocol === 'https:' ? https : http;
        const upReq = mod.request({
          hostname: target.hostname,
          port: target.port,
          path: `${target.pathname}${target.search}`,
          method: req.method,
          headers,
        });
        upReq.on('upgrade', (upRes, upSocket, upHead) => {
          metrics.proxyRequests.inc({ kind: 'ws', outcome: '101' });
          let head101 = `HTTP/1.1 101 ${upRes.statusMessage ?? 'Switching Protocols'}\r\n`;
          for (let i = 0; i < upRes.rawHeaders.length; i += 2)
            head101 += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`;
          socket.write(`${head101}\r\n`);
          if (upHead.length) socket.write(upHead);
          if (head.length) upSocket.write(head);
          upSocket.on('error', () => socket.destroy());
          socket.on('error', () => upSocket.destroy());
          upSocket.pipe(socket);
          socket.pipe(upSocket);
          socket.on('close', () => upSocket.destroy());
          upSocket.on('close', () => socket.destroy());
        });
        upReq.on('response', (upRes) => {
          // The upstream refused the upgrade: relay its answer.
          let line = `HTTP/1.1 ${upRes.statusCode} ${upRes.statusMessage ?? ''}\r\n`;
          for (let i = 0; i < upRes.rawHeaders.length; i += 2)
            line += `${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}\r\n`;
          socket.write(`${line}\r\n`);
          upRes.pipe(socket);
        });
        upReq.on('error', () => reject(502, 'Bad Gateway'));
        upReq.end();
      })().catch((err) => {
        o.log.warn({ err, previewId: id }, 'upgrade failed');
        reject(500, 'Internal Server Error');
      });
      return true;
    },
  };
}
