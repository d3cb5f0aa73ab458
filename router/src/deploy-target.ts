import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { ForbiddenError, InvalidInputError } from '@preview/tiers';

/**
 * Addresses a deploy may not reach unless its host is allowed by name (`DEPLOY_TARGET_HOSTS`):
 * loopback, private (RFC 1918), shared (RFC 6598), link-local and cloud metadata (RFC 3927),
 * unspecified, multicast and reserved IPv4; loopback, unique-local (RFC 4193), link-local and
 * multicast IPv6 (an IPv4-mapped IPv6 address is checked by `BlockList` against the IPv4 rules). A deploy target is a user's input: without this rule any owner could make the
 * router log in to a database on its own network (its own Postgres, another tenant's).
 */
const INTERNAL = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  INTERNAL.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  INTERNAL.addSubnet(net, prefix, 'ipv6');

/** True when `address` (an IP literal) is internal (see {@link INTERNAL}). */
export function isInternalAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return INTERNAL.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Resolves a host name to all its addresses (`dns.lookup` with `all`). */
export type HostLookup = (host: string) => Promise<Array<{ address: string }>>;

const systemLookup: HostLookup = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Checks a deploy's target database URL before the router connects to it: a host named in
 * `allowedHosts` (exact, case-insensitive; `DEPLOY_TARGET_HOSTS`) is taken as is; any other host
 * must resolve, and every address it resolves to must be public ({@link isInternalAddress}).
 * @param allowedHosts host names or IP literals the operator allows, e.g. `['db.internal', '10.0.0.5']`
 * @returns the checked address the deploy must connect to (the first one the name resolved to), so
 *   the name is not resolved again between the check and the connection (DNS rebinding); undefined
 *   for a host allowed by name or given as an IP literal (connect to it as it is)
 * @throws InvalidInputError `invalid_target` (no host, or it does not resolve), naming `databaseUrl`
 * @throws ForbiddenError `target_forbidden`, naming `databaseUrl` and the rule
 */
export async function checkDeployTarget(
  databaseUrl: string,
  allowedHosts: readonly string[],
  lookup: HostLookup = systemLookup,
): Promise<string | undefined> {
  let host: string;
  try {
    host = new URL(databaseUrl).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  } catch {
    throw new InvalidInputError('invalid_target', 'databaseUrl: must be a postgres:// URL');
  }
  if (!host) throw new InvalidInputError('invalid_target', 'databaseUrl: must name a host');
  if (allowedHosts.some((h) => h.toLowerCase() === host)) return undefined;
  const literal = isIP(host) !== 0;
  let addresses: string[];
  if (literal) addresses = [host];
  else {
    try {
      addresses = (await lookup(host)).map((a) => a.address);
    } catch (e) {
      throw new InvalidInputError('invalid_target', `databaseUrl: host ${host} does not resolve`, {
        cause: e,
      });
    }
  }
  const internal = addresses.find(isInternalAddress);
  if (internal !== undefined || addresses.length === 0)
    throw new ForbiddenError(
      'target_forbidden',
      `databaseUrl: host ${host} is an internal address (${internal ?? 'none'}); a deploy reaches public hosts only (rule deploy_target: allow it by name in DEPLOY_TARGET_HOSTS)`,
    );
  return literal ? undefined : addresses[0];
}
