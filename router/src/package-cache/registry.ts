import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { NotFoundError, TierUnavailableError } from '@preview/tiers';

/** What the package cache reads of a registry packument (`GET <registry>/<name>`). */
export interface Packument {
  name: string;
  'dist-tags'?: Record<string, string>;
  versions: Record<
    string,
    {
      dist: { tarball: string; integrity?: string };
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
    }
  >;
}

/** The npm registry as the package cache uses it. */
export interface RegistryClient {
  /** The packument of `name`. @throws NotFoundError (unknown package), TierUnavailableError (registry down) */
  packument(name: string): Promise<Packument>;
  /** The bytes at `url` (a tarball named by a packument). */
  tarball(url: string): Promise<Buffer>;
}

export interface RegistryOptions {
  /** Registry base URL, e.g. `https://registry.npmjs.org/` (config `NPM_REGISTRY_URL`). */
  url: string;
  /** Extra CA certificates (PEM file path, config `NPM_CA_FILE`), added to Node's defaults. */
  caFile?: string | undefined;
  /** Per-request timeout in ms. @default 30000 */
  timeoutMs?: number;
  /** Largest response accepted, bytes. @default 64 MiB */
  maxBytes?: number;
}

/**
 * A minimal npm registry client over `node:https` (so the CA of the configuration applies): the
 * abbreviated packument (`accept: application/vnd.npm.install-v1+json`) and tarballs. Scoped names
 * are encoded as npm does (`@scope%2fname`).
 *
 * @throws TypeError when `url` is not an http(s) URL
 */
export function createRegistryClient(o: RegistryOptions): RegistryClient {
  let base: URL;
  try {
    base = new URL(o.url.endsWith('/') ? o.url : `${o.url}/`);
  } catch {
    throw new TypeError(`NPM_REGISTRY_URL: not a URL (${JSON.stringify(o.url)})`);
  }
  if (base.protocol !== 'https:' && base.protocol !== 'http:')
    throw new TypeError('NPM_REGISTRY_URL: must be http(s)');
  // Node's bundled roots plus the configured file (an explicit `ca` replaces the defaults otherwise).
  const ca = o.caFile ? [...tls.rootCertificates, readFileSync(o.caFile, 'utf8')] : undefined;
  const timeoutMs = o.timeoutMs ?? 30_000;
  const maxBytes = o.maxBytes ?? 64 * 1024 * 1024;

  const get = (url: URL, accept: string): Promise<{ status: number; body: Buffer }> =>
    new Promise((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.get(
        url,
        { headers: { accept }, timeout: timeoutMs, ...(ca && url.protocol === 'https:' ? { ca } : {}) },
        (res) => {
          const chunks: Buffer[] = [];
          let n = 0;
          res.on('data', (c: Buffer) => {
            n += c.length;
            if (n > maxBytes) {
              req.destroy(new Error(`${url.href}: response over ${maxBytes} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${url.href}: no answer in ${timeoutMs} ms`)));
      req.on('error', reject);
    });

  const unavailable = (what: string, e: unknown) =>
    new TierUnavailableError('registry_unavailable', `npm registry: ${what}: ${(e as Error).message ?? e}`, {
      tier: 'registry',
      cause: e,
    });

  return {
    async packument(name) {
      const url = new URL(name.replace('/', '%2f'), base);
      let r: { status: number; body: Buffer };
      try {
        r = await get(url, 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8');
      } catch (e) {
        throw unavailable(name, e);
      }
      if (r.status === 404)
        throw new NotFoundError('package_not_found', `package ${name} is not in the registry`);
      if (r.status !== 200) throw unavailable(name, new Error(`HTTP ${r.status}`));
      return JSON.parse(r.body.toString('utf8')) as Packument;
    },
    async tarball(url) {
      let r: { status: number; body: Buffer };
      try {
        r = await get(new URL(url), 'application/octet-stream');
      } catch (e) {
        throw unavailable(url, e);
      }
      if (r.status !== 200) throw unavailable(url, new Error(`HTTP ${r.status}`));
      return r.body;
    },
  };
}
