import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ConfigError, InvalidInputError } from '@preview/tiers';
import type { Logger } from 'pino';

/** A destination the proxy lets through: a host name (or address) and a TCP port. */
export interface AllowedHost {
  host: string;
  port: number;
}

export interface RegistryProxy {
  readonly host: string;
  readonly port: number;
  /** `http://host:port`: the value of `npm_config_proxy` / `HTTPS_PROXY` in a sandbox. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The allowed destinations for a registry URL: its host and port (443 for https, 80 for http).
 *
 * @throws InvalidInputError (`invalid_config`) when `url` is not an http(s) URL.
 * @example
 * registryHosts('https://registry.npmjs.org/'); // [{ host: 'registry.npmjs.org', port: 443 }]
 */
export function registryHosts(url: string): AllowedHost[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidInputError('invalid_config', `PREVIEW_EGRESS_REGISTRY: must be a URL (got ${url})`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:')
    throw new InvalidInputError(
      'invalid_config',
      `PREVIEW_EGRESS_REGISTRY: must be http(s) (got ${u.protocol})`,
    );
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  return [{ host: u.hostname.replace(/^\[|\]$/g, '').toLowerCase(), port }];
}

const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * A node-local forward proxy that lets previews reach only `allow` (the npm registry): `CONNECT
 * host:port` tunnels (https) and absolute-URI requests (http) to an allowed host and port; anything
 * else is answered 403 and logged. It resolves names itself, so previews need no DNS to the
 * internet. Listens on the preview network's gateway; the egress rules let previews reach this port
 * and nothing else on the host.
 *
 * @throws ConfigError (`invalid_config`) with an empty `allow`.
 * @example
 * const proxy = await startRegistryProxy({ listenHost: '172.18.0.1', allow: registryHosts('https://registry.npmjs.org/') });
 * // in the sandbox: npm_config_proxy=npm_config_https_proxy=HTTPS_PROXY=proxy.url
 */
export async function startRegistryProxy(options: {
  listenHost: string;
  /** @default 0 (any free port) */
  listenPort?: number;
  allow: AllowedHost[];
  /** Simultaneous connections at most. @default 512 */
  maxConnections?: number;
  log?: Logger | undefined;
}): Promise<RegistryProxy> {
  if (options.allow.length === 0)
    throw new ConfigError('invalid_config', 'startRegistryProxy: allow must name at least one host');
  const allowed = new Set(options.allow.map((a) => `${a.host.toLowerCase()}:${a.port}`));
  const isAllowed = (host: string, port: number) =>
    allowed.has(`${host.replace(/^\[|\]$/g, '').toLowerCase()}:${port}`);
  const log = options.log;
  const sockets = new Set<Socket | Duplex>();
  const track = (s: Socket | Duplex) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let u: URL;
    try {
      u = new URL(req.url ?? '');
    } catch {
      return refuse(res, 400, 'a proxy request needs an absolute http:// URL');
    }
    const port = Number(u.port || 80);
    if (u.protocol !== 'http:' || !isAllowed(u.hostname, port)) {
      log?.warn({ host: u.host, protocol: u.protocol }, 'egress proxy refused a request');
      return refuse(res, 403, `egress to ${u.host} is not allowed (registry-only)`);
    }
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
    const up = request(
      { host: u.hostname, port, method: req.method, path: `${u.pathname}${u.search}`, headers },
      (r) => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
        res.writeHead(r.statusCode ?? 502, out);
        r.pipe(res);
      },
    );
    up.on('error', (e) => {
      if (!res.headersSent) refuse(res, 502, `upstream ${u.host}: ${e.message}`);
      else res.destroy();
    });
    req.pipe(up);
  });

  server.on('connect', (req: IncomingMessage, client: Duplex, head: Buffer) => {
    track(client);
    client.on('error', () => client.destroy());
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(req.url ?? '');
    const host = m?.[1];
    const port = Number(m?.[2]);
    if (!host || !isAllowed(host, port)) {
      log?.warn({ target: req.url }, 'egress proxy refused a tunnel');
      client.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\negress to ${req.url} is not allowed (registry-only)\n`,
      );
      return;
    }
    const upstream = connect(port, host.replace(/^\[|\]$/g, ''));
    track(upstream);
    let open = false;
    upstream.once('connect', () => {
      open = true;
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', (e) => {
      if (!open) client.end(`HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\n${e.message}\n`);
      else client.destroy();
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => {
      if (open) client.destroy();
    });
  });
  server.on('connection', (s) => track(s));
  server.maxConnections = options.maxConnections ?? 512;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, options.listenHost, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.listenHost;
  return {
    host,
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function refuse(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' });
  res.end(`${message}\n`);
}
