import { describe, expect, it } from 'vitest';
import { egressRules, restoreScript } from './rules.ts';

const base = {
  network: 'preview-net',
  bridge: 'br-0123456789ab',
  gateway: '172.18.0.1',
  mode: 'registry-only' as const,
  hostPorts: [5433, 3128],
};

describe('egressRules', () => {
  it('rejects the deny list, other bridges and (registry-only) the rest; lets the gateway ports in', () => {
    const set = egressRules(base);
    const v4 = set.families.find((f) => f.family === 4)!;
    const [fwd = [], inp = []] = v4.chains.map((c) => c.rules.map((r) => r.join(' ')));
    expect(fwd).toContain('-o br-+ -j REJECT --reject-with icmp-admin-prohibited');
    expect(fwd).toContain('-d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited');
    for (const cidr of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'])
      expect(fwd).toContain(`-d ${cidr} -j REJECT --reject-with icmp-admin-prohibited`);
    expect(fwd.at(-1)).toBe('-j REJECT --reject-with icmp-admin-prohibited');
    expect(inp).toEqual([
      '-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN',
      '-d 172.18.0.1/32 -p tcp -m tcp --dport 3128 -j RETURN',
      '-d 172.18.0.1/32 -p tcp -m tcp --dport 5433 -j RETURN',
      '-j REJECT --reject-with icmp-admin-prohibited',
    ]);
    expect(v4.jumps.map((j) => j.from)).toEqual(['DOCKER-USER', 'INPUT']);
  });

  it('open ends in RETURN (Docker forwards), none in REJECT; the version changes with the rules', () => {
    const open = egressRules({ ...base, mode: 'open' });
    const none = egressRules({ ...base, mode: 'none' });
    expect(open.families[0]!.chains[0]!.rules.at(-1)).toEqual(['-j', 'RETURN']);
    expect(none.families[0]!.chains[0]!.rules.at(-1)).toEqual([
      '-j',
      'REJECT',
      '--reject-with',
      'icmp-admin-prohibited',
    ]);
    expect(open.tag).toBe(none.tag);
    expect(open.versionTag).not.toBe(none.versionTag);
    expect(egressRules(base).versionTag).toBe(egressRules({ ...base, hostPorts: [3128, 5433] }).versionTag);
  });

  it('tags every rule, so a restore replaces the chains whole', () => {
    const set = egressRules(base);
    const script = restoreScript(set, set.families[0]!);
    const rules = script.split('\n').filter((l) => l.startsWith('-A '));
    expect(rules.length).toBeGreaterThan(10);
    for (const r of rules) expect(r).toContain(`--comment ${set.versionTag}`);
    expect(script).toMatch(/^\*filter\n:PVE-[0-9a-f]{10}-F - \[0:0\]\n:PVE-[0-9a-f]{10}-I - \[0:0\]\n/);
    expect(script.trimEnd().endsWith('COMMIT')).toBe(true);
  });

  it('names the bad field', () => {
    expect(() => egressRules({ ...base, gateway: '300.1.1.1' })).toThrow(/egress gateway: must be an IPv4/);
    expect(() => egressRules({ ...base, bridge: 'br-x; rm -rf' })).toThrow(/egress bridge/);
    expect(() => egressRules({ ...base, hostPorts: [0] })).toThrow(/egress hostPorts/);
    expect(() => egressRules({ ...base, network: 'a b' })).toThrow(/egress network/);
  });
});
