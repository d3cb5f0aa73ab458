import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';

/** A database's address as the agent's host reaches it. */
export interface DbTarget {
  /** Host name or IP address (IPv6 without brackets). */
  host: string;
  port: number;
}

export interface DbForwarder {
  /** Where previews connect: the listen address and port. */
  readonly host: string;
  readonly port: number;
  /** Where new connections go; `undefined` while the target is not known yet (they are closed). */
  readonly target: DbTarget | undefined;
  /** Points new connections at another target (or none); open connections keep theirs. */
  setTarget(target: DbTarget | undefined): void;
  close(): Promise<void>;
}

/**
 * A TCP forwarder to exactly one target (the database), listening on the preview network's gateway
 * address: a preview reaches Postgres through it and nothing else on the host. The target may be
 * set later (an agent learns it from the router at registration, after the forwarder's port has
 * been opened in the egress rules); until then connections are closed at once.
 *
 * @example
 * const fwd = await startDbForwarder({ listenHost: '172.18.0.1', target: { host: '127.0.0.1', port: 5432 } });
 * // DATABASE_URL=postgres://u:p@172.18.0.1:${fwd.port}/db inside the container
 */
export async function startDbForwarder(options: {
  listenHost: string;
  /** @default 0 (a free port) */
  listenPort?: number;
  target?: DbTarget | undefined;
}): Promise<DbForwarder> {
  const sockets = new Set<Socket>();
  let target = options.target && { ...options.target };
  const server: Server = createServer((client) => {
    if (!target) {
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
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
    get target() {
      return target && { ...target };
    },
    setTarget(t) {
      target = t && { ...t };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1']);
const bare = (host: string) => host.replace(/^\[(.*)\]$/, '$1').toLowerCase();

/** Whether a URL's host and port (5432 when it names none) are the target's. */
export function pointsAt(url: URL, target: DbTarget): boolean {
  const host = bare(url.hostname);
  const want = bare(target.host);
  const sameHost = host === want || (LOOPBACK.has(host) && LOOPBACK.has(want));
  return sameHost && Number(url.port || 5432) === target.port;
}

/**
 * Rewrites a Postgres URL (`postgres:` or `postgresql:`) that points at the forwarded target so it
 * points at the forwarder instead, keeping user, password, database and query (Prisma's `schema`,
 * `sslmode`); any other value is returned unchanged.
 *
 * @example
 * rewriteDatabaseUrl('postgres://u:p@127.0.0.1:5432/db', { host: '127.0.0.1', port: 5432 }, { host: '172.18.0.1', port: 40000 });
 * // → 'postgres://u:p@172.18.0.1:40000/db'
 */
export function rewriteDatabaseUrl(url: string, target: DbTarget, via: DbTarget): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  if ((u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') || !pointsAt(u, target)) return url;
  u.hostname = via.host.includes(':') ? `[${via.host}]` : via.host;
  u.port = String(via.port);
  return u.toString();
}
