import type { Logger } from 'pino';
import { type DbForwarder, rewriteDatabaseUrl, startDbForwarder } from './db-forwarder.ts';
import type { ContainerRuntime } from './runtime/types.ts';

export interface DatabaseAccessOptions {
  runtime: Pick<ContainerRuntime, 'network' | 'kind'>;
  /** `PREVIEW_DATABASE_TARGET`: Postgres as the host reaches it. */
  target: { host: string; port: number } | undefined;
  log: Logger;
}

/**
 * How previews reach the database: on a runtime whose sandboxes have their own network (Docker), a
 * forwarder on the preview network's gateway to exactly the target, and every app environment value
 * that is a URL of the target rewritten to point at it. Sandboxes on the host's network reach the
 * target as it is.
 *
 * @example
 * const db = await DatabaseAccess.start({ runtime, target: { host: '127.0.0.1', port: 5432 }, log });
 * db.appEnv({ DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/app' }); // → postgres://u:p@172.18.0.1:<fwd>/app
 */
export class DatabaseAccess {
  readonly #o: DatabaseAccessOptions;
  readonly #forwarder: DbForwarder | undefined;

  private constructor(o: DatabaseAccessOptions, forwarder: DbForwarder | undefined) {
    this.#o = o;
    this.#forwarder = forwarder;
  }

  static async start(o: DatabaseAccessOptions): Promise<DatabaseAccess> {
    const net = o.runtime.network;
    if (!o.target || net.kind === 'host') return new DatabaseAccess(o, undefined);
    if (!net.address) {
      o.log.warn('no gateway address on the preview network; database not forwarded');
      return new DatabaseAccess(o, undefined);
    }
    return new DatabaseAccess(o, await startDbForwarder({ listenHost: net.address, target: o.target }));
  }

  /** Where previews reach the forwarder, when there is one. */
  get forwarder(): { host: string; port: number } | undefined {
    return this.#forwarder && { host: this.#forwarder.host, port: this.#forwarder.port };
  }

  /** The app's environment as its sandbox must see it. */
  async appEnv(env: Record<string, string> | undefined): Promise<Record<string, string> | undefined> {
    if (!env || !this.#forwarder || !this.#o.target) return env;
    const out = { ...env };
    if (out['DATABASE_URL'])
      out['DATABASE_URL'] = rewriteDatabaseUrl(out['DATABASE_URL'], this.#o.target, this.#forwarder);
    return out;
  }

  async close(): Promise<void> {
    await this.#forwarder?.close();
  }
}
