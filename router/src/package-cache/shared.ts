import type pg from 'pg';
import type { PackageModule } from './cache.ts';

/**
 * Where router replicas share the modules their package caches bundled, so each published
 * `name@version/subpath` is fetched and bundled once for the whole deployment, not once per replica.
 * Entries are immutable (a published npm version never changes).
 */
export interface SharedModuleStore {
  /** The stored bundle of `name@version/subpath` (`subpath` `''` for the main entry), or undefined. */
  get(name: string, version: string, subpath: string): Promise<string | undefined>;
  /** Stores a bundle. When another replica stored the same module first, its row stays (same bytes). */
  put(m: PackageModule): Promise<void>;
}

/**
 * The shared store in the router's Postgres: table `package_modules` (migration
 * `20261130000000_package_modules.sql`), one row per module, primary key (name, version, subpath).
 *
 * @example
 * const cache = createPackageCache({ registry, dir, shared: createPostgresModuleStore(pool) });
 */
export function createPostgresModuleStore(pool: pg.Pool): SharedModuleStore {
  return {
    async get(name, version, subpath) {
      const { rows } = await pool.query<{ code: string }>(
        'SELECT code FROM package_modules WHERE name = $1 AND version = $2 AND subpath = $3',
        [name, version, subpath],
      );
      return rows[0]?.code;
    },
    async put(m) {
      await pool.query(
        `INSERT INTO package_modules (name, version, subpath, code) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name, version, subpath) DO NOTHING`,
        [m.name, m.version, m.subpath, m.code],
      );
    },
  };
}
