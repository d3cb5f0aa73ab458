import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

export interface DbForwarder {
  /** Where previews connect: the listen address and port. */
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A TCP forwarder to exactly one target (the database), listening on the preview network's gateway
 * address: a preview reaches Postgres through it and nothing else on the host.
 *
 * @example
 * const fwd = await startDbForwarder({ listenHost: '172.18.0.1', target: { host: '127.0.0.1', port: 5432 } });
 * // DATABASE_URL=postgres://u:p@172.18.0.1:${fwd.port}/db inside the container
 */
export async function startDbForwarder(options: {
  listenHost: string;
  listenPort?: number;
  target: { host: string; port: number };
}): Promise<DbForwarder> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(options.target.port, options.target.host);
    sockets.add(client);
    sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, options.listenHost, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host: options.listenHost,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Rewrites a DATABASE_URL that points at the forwarded target so it points at the forwarder instead;
 * any other URL is returned unchanged.
 */
export function rewriteDatabaseUrl(
  url: string,
  target: { host: string; port: number },
  via: { host: string; port: number },
): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  const port = Number(u.port || 5432);
  const local = (h: string) => h === 'localhost' || h === '127.0.0.1' || h === '[::1]';
  const sameHost = u.hostname === target.host || (local(u.hostname) && local(target.host));
  if (!sameHost || port !== target.port) return url;
  u.hostname = via.host;
  u.port = String(via.port);
  return u.toString();
}
