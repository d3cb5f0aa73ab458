import { createHash } from 'node:crypto';
import { ConfigError, type InvalidInputError } from '@preview/tiers';

/**
 * What previews may reach beyond the fixed deny list: `open` the internet, `registry-only` nothing
 * but the node-local registry proxy, `none` nothing at all.
 */
export type EgressMode = 'open' | 'registry-only' | 'none';

/**
 * One preview network as the firewall sees it. The rules belong to the network (its bridge), not to
 * an agent: an agent that applies them replaces what another agent on the same network left.
 */
export interface EgressTarget {
  /** Docker network name (in the tag). */
  network: string;
  /** Host interface of the bridge, e.g. `br-0123456789ab`. */
  bridge: string;
  /** The bridge's gateway address on the host (where the forwarder and the proxy listen). */
  gateway: string;
  mode: EgressMode;
  /** TCP ports on `gateway` previews may connect to (the database forwarder, the registry proxy). */
  hostPorts: number[];
}

/** Private and special ranges no preview may reach, whatever the mode. */
export const DENIED_V4 = [
  '169.254.0.0/16', // link-local, cloud metadata (169.254.169.254)
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10', // carrier-grade NAT, Tailscale
  '127.0.0.0/8',
  '0.0.0.0/8',
  '224.0.0.0/4', // multicast
  '240.0.0.0/4',
] as const;

/** Comment prefix on every rule the agent makes (`iptables -S | grep preview-egress:` lists them). */
export const TAG_PREFIX = 'preview-egress:';

const NAME_RE = /^[a-zA-Z0-9._-]{1,64}$/;
const BRIDGE_RE = /^[a-zA-Z0-9_.-]{1,15}$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** One address family's rules for one network: the chains' contents and the jumps into them. */
export interface FamilyRules {
  family: 4 | 6;
  /** `iptables` or `ip6tables`. */
  command: 'iptables' | 'ip6tables';
  /** Built-in chain → our chain, entered for packets from the bridge. */
  jumps: { from: string; to: string }[];
  /** Our chains and their rules (arguments after `-A <chain>`). */
  chains: { name: string; rules: string[][] }[];
}

/** The whole rule set for one network, and the tags that identify it. */
export interface EgressRuleSet {
  /** `preview-egress:net=<network>:br=<bridge>`: on every rule for this network. */
  tag: string;
  /** `<tag>:v=<hash of the rule set>`: a rule with another version is stale. */
  versionTag: string;
  families: FamilyRules[];
}

/**
 * The rules for one preview network (pure: nothing runs). Forwarded traffic from the bridge (chain
 * entered from DOCKER-USER) is rejected towards any Docker bridge (other previews, other containers,
 * and the preview's own bridge: inter-container traffic), link-local/metadata and private ranges
 * ({@link DENIED_V4}), then allowed (`open`) or rejected (`registry-only`, `none`). Traffic from the
 * bridge to the host itself (chain entered from INPUT) is rejected except replies and the `hostPorts`
 * on the gateway. IPv6 from the bridge is rejected both ways. Rejections use
 * `icmp-admin-prohibited`, so the app fails at once (EHOSTUNREACH) instead of hanging.
 *
 * @throws ConfigError (`invalid_config`) naming the bad field (network, bridge, gateway, hostPorts).
 * @example
 * egressRules({ network: 'preview-net', bridge: 'br-0123456789ab', gateway: '172.18.0.1', mode: 'registry-only', hostPorts: [5433, 3128] });
 */
export function egressRules(t: EgressTarget): EgressRuleSet {
  if (!NAME_RE.test(t.network)) throw bad('network', `must match ${NAME_RE} (got ${t.network})`);
  if (!BRIDGE_RE.test(t.bridge)) throw bad('bridge', `must be an interface name (got ${t.bridge})`);
  const gw = IPV4_RE.exec(t.gateway);
  if (!gw || gw.slice(1).some((o) => Number(o) > 255))
    throw bad('gateway', `must be an IPv4 address (got ${t.gateway})`);
  for (const p of t.hostPorts)
    if (!Number.isInteger(p) || p < 1 || p > 65535)
      throw bad('hostPorts', `each must be a TCP port 1-65535 (got ${p})`);
  const tag = `${TAG_PREFIX}net=${t.network}:br=${t.bridge}`;
  const id = createHash('sha256').update(t.bridge).digest('hex').slice(0, 10);
  const fwd = `PVE-${id}-F`;
  const inp = `PVE-${id}-I`;
  const reject4 = ['-j', 'REJECT', '--reject-with', 'icmp-admin-prohibited'];
  const reject6 = ['-j', 'REJECT', '--reject-with', 'icmp6-adm-prohibited'];
  const replies = ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'RETURN'];
  const v4: FamilyRules = {
    family: 4,
    command: 'iptables',
    jumps: [
      { from: 'DOCKER-USER', to: fwd },
      { from: 'INPUT', to: inp },
    ],
    chains: [
      {
        name: fwd,
        rules: [
          replies,
          ['-o', 'br-+', ...reject4],
          ['-o', 'docker0', ...reject4],
          ...DENIED_V4.map((cidr) => ['-d', cidr, ...reject4]),
          t.mode === 'open' ? ['-j', 'RETURN'] : reject4,
        ],
      },
      {
        name: inp,
        rules: [
          replies,
          ...[...new Set(t.hostPorts)]
            .sort((a, b) => a - b)
            .map((p) => [
              '-d',
              `${t.gateway}/32`,
              '-p',
              'tcp',
              '-m',
              'tcp',
              '--dport',
              String(p),
              '-j',
              'RETURN',
            ]),
          reject4,
        ],
      },
    ],
  };
  const v6: FamilyRules = {
    family: 6,
    command: 'ip6tables',
    jumps: [
      { from: 'FORWARD', to: fwd },
      { from: 'INPUT', to: inp },
    ],
    chains: [
      { name: fwd, rules: [replies, reject6] },
      { name: inp, rules: [replies, reject6] },
    ],
  };
  const families = [v4, v6];
  const version = createHash('sha256')
    .update(JSON.stringify({ bridge: t.bridge, families }))
    .digest('hex')
    .slice(0, 12);
  const versionTag = `${tag}:v=${version}`;
  return { tag, versionTag, families };
}

/**
 * `iptables-restore --noflush` input that (re)creates a family's chains with exactly their rules,
 * each tagged: declaring an existing chain empties it, so applying twice leaves one copy.
 */
export function restoreScript(set: EgressRuleSet, f: FamilyRules): string {
  const lines = ['*filter', ...f.chains.map((c) => `:${c.name} - [0:0]`)];
  for (const c of f.chains)
    for (const r of c.rules)
      lines.push(['-A', c.name, '-m', 'comment', '--comment', set.versionTag, ...r].join(' '));
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The arguments of the jump rule from `from` into `to` for packets from `bridge` (after `-I/-C/-D <from>`). */
export function jumpArgs(set: EgressRuleSet, bridge: string, to: string): string[] {
  return ['-i', bridge, '-m', 'comment', '--comment', set.tag, '-j', to];
}

function bad(field: string, rule: string): InvalidInputError {
  return new ConfigError('invalid_config', `egress ${field}: ${rule}`);
}
