import type { Logger } from 'pino';
import { type DbForwarder, type DbTarget, rewriteDatabaseUrl, startDbForwarder } from './db-forwarder.ts';
import type { ContainerRuntime } from './runtime/types.ts';

export interface DatabaseAccessOptions {
  runtime: Pick<ContainerRuntime, 'network' | 'kind'>;
  /**
   * `PREVIEW_DATABASE_TARGET`: Postgres as the host reaches it. When set it wins over what the
   * router announces.
   */
  target: DbTarget | undefined;
  /**
   * The agent registers with a router, which announces the target at registration
   * ({@link DatabaseAccess.useRouterTarget}): the forwarder is opened now, its target set then.
   * @default false
   */
  targetFromRouter?: boolean;
  log: Logger;
}

/**
 * How previews reach the database: on a runtime whose sandboxes have their own network (Docker), a
 * forwarder on the preview network's gateway to exactly the target, and every app environment value
 * that is a Postgres URL of the target (`DATABASE_URL`, `PRISMA_DATABASE_URL`, ...) rewritten to
 * point at it. Sandboxes on the host's network reach the target as it is.
 *
 * The target is `PREVIEW_DATABASE_TARGET` when configured, else what the router announces when the
 * agent registers (the host and port of the router's `PREVIEW_DATABASE_URL`), so every agent,
 * the router's embedded one included, forwards without configuration.
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
    if ((!o.target && !o.targetFromRouter) || net.kind === 'host') return new DatabaseAccess(o, undefined);
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

  /** Where forwarded connections go, once known. */
  get target(): DbTarget | undefined {
    return this.#forwarder?.target ?? this.#o.target;
  }

  /**
   * The target the router announced at (re-)registration; `undefined` when it has no preview
   * database. Ignored when `PREVIEW_DATABASE_TARGET` is configured (a different one is logged).
   */
  useRouterTarget(announced: DbTarget | undefined): void {
    if (this.#o.target) {
      if (announced && (announced.host !== this.#o.target.host || announced.port !== this.#o.target.port))
        this.#o.log.warn(
          { configured: this.#o.target, announced },
          'PREVIEW_DATABASE_TARGET differs from the database the router announced; using PREVIEW_DATABASE_TARGET',
        );
      return;
    }
    if (!this.#forwarder) return;
    this.#forwarder.setTarget(announced);
    if (announced)
      this.#o.log.info({ target: announced, via: this.forwarder }, 'forwarding the preview database');
  }

  /** The app's environment as its sandbox must see it. */
  async appEnv(env: Record<string, string> | undefined): Promise<Record<string, string> | undefined> {
    const target = this.target;
    if (!env || !this.#forwarder || !target) return env;
    const via = this.forwarder!;
    return Object.fromEntries(
      Object.entries(env).map(([name, value]) => [name, rewriteDatabaseUrl(value, target, via)]),
    );
  }

  async close(): Promise<void> {
    await this.#forwarder?.close();
  }
}
