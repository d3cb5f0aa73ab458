import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { TierUnavailableError } from '@preview/tiers';
import type { Logger } from 'pino';
import { type EgressRuleSet, type FamilyRules, jumpArgs, restoreScript, TAG_PREFIX } from './rules.ts';

const exec = promisify(execFile);

/** A rule line as `iptables -S` prints it, split into arguments, quotes removed (our comments have no spaces). */
type RuleLine = string[];

export interface EgressFirewallOptions {
  log?: Logger | undefined;
  /** Whether to manage IPv6 too. @default true when the kernel has IPv6 (`/proc/net/if_inet6`). */
  ipv6?: boolean;
}

/**
 * Applies, checks and removes the rule sets of {@link egressRules} with the host's `iptables` /
 * `ip6tables` (nf_tables or legacy; `-w` waits for the xtables lock). Needs root (CAP_NET_ADMIN) in
 * the host's network namespace.
 *
 * @example
 * const fw = new EgressFirewall({ log });
 * await fw.ensure(egressRules(target), target.bridge); // applies only what is missing or stale
 */
export class EgressFirewall {
  readonly #log: Logger | undefined;
  readonly #ipv6: boolean;

  constructor(o: EgressFirewallOptions = {}) {
    this.#log = o.log;
    this.#ipv6 = o.ipv6 ?? existsSync('/proc/net/if_inet6');
  }

  #families(set: EgressRuleSet): FamilyRules[] {
    return set.families.filter((f) => f.family === 4 || this.#ipv6);
  }

  /**
   * Whether the rule set is in place: each chain holds exactly its rules at this version, and each
   * jump exists with only other preview networks' jumps before it in its built-in chain.
   */
  async check(set: EgressRuleSet, bridge: string): Promise<boolean> {
    for (const f of this.#families(set)) {
      for (const c of f.chains) {
        const lines = await this.#list(f.command, c.name).catch(() => undefined);
        if (!lines) return false;
        const rules = lines.filter((l) => l[0] === '-A');
        if (rules.length !== c.rules.length) return false;
        if (!rules.every((l) => l.includes(set.versionTag))) return false;
      }
      for (const j of f.jumps) {
        // Ours, and preceded only by other preview networks' jumps (several agents share a host).
        const rules = (await this.#list(f.command, j.from)).filter((l) => l[0] === '-A');
        const want = jumpArgs(set, bridge, j.to).join(' ');
        const at = rules.findIndex((l) => l.slice(2).join(' ') === want);
        if (at < 0) return false;
        if (!rules.slice(0, at).every((l) => l.some((a) => a.startsWith(TAG_PREFIX)))) return false;
      }
    }
    return true;
  }

  /**
   * Makes the rule set current: rewrites the chains atomically (`iptables-restore --noflush`) and
   * puts each jump first in its built-in chain (once). Idempotent.
   *
   * @throws TierUnavailableError (`docker`) when iptables is missing, not permitted, or DOCKER-USER is absent.
   */
  async apply(set: EgressRuleSet, bridge: string): Promise<void> {
    for (const f of this.#families(set)) {
      await this.#restore(f.command, restoreScript(set, f));
      for (const j of f.jumps) {
        const args = jumpArgs(set, bridge, j.to);
        // Drop every copy (also one that slipped below another rule), then insert one at the top.
        while (
          await this.#run(f.command, ['-D', j.from, ...args]).then(
            () => true,
            () => false,
          )
        );
        await this.#run(f.command, ['-I', j.from, '1', ...args]);
      }
    }
    this.#log?.info({ tag: set.versionTag, bridge }, 'egress rules applied');
  }

  /** {@link check}, then {@link apply} when something is missing or stale. Returns whether it applied. */
  async ensure(set: EgressRuleSet, bridge: string): Promise<boolean> {
    if (await this.check(set, bridge)) return false;
    await this.apply(set, bridge);
    return true;
  }

  /**
   * Removes the rules of every preview network whose bridge `keep` does not answer true for (the
   * sweep: a removed network's rules). Returns the tags removed. Repeat-safe.
   */
  async sweep(keep: (bridge: string) => boolean): Promise<string[]> {
    const removed = new Set<string>();
    for (const command of this.#commands()) {
      const all = await this.#list(command).catch(() => [] as RuleLine[]);
      const chains = new Set<string>();
      for (const l of all) {
        const ci = l.indexOf('--comment');
        const tag = ci >= 0 ? l[ci + 1] : undefined;
        if (l[0] !== '-A' || !tag?.startsWith(TAG_PREFIX)) continue;
        const target = l[l.indexOf('-j') + 1];
        // A jump into one of our chains (a chain's own rules go with the chain).
        if (!target?.startsWith('PVE-') || l[1]?.startsWith('PVE-')) continue;
        const bridge = l[l.indexOf('-i') + 1];
        if (!bridge || keep(bridge)) continue;
        await this.#run(command, ['-D', l[1]!, ...l.slice(2)]).catch(() => {});
        chains.add(target);
        removed.add(tag);
      }
      for (const c of chains) {
        await this.#run(command, ['-F', c]).catch(() => {});
        await this.#run(command, ['-X', c]).catch(() => {});
      }
    }
    if (removed.size) this.#log?.info({ tags: [...removed] }, 'egress rules of removed networks removed');
    return [...removed];
  }

  /** The TCP ports the set's host chain (IPv4 INPUT side) currently lets through, as applied. */
  async hostPorts(set: EgressRuleSet): Promise<number[]> {
    const chain = set.families.find((f) => f.family === 4)?.chains.find((c) => c.name.endsWith('-I'));
    if (!chain) return [];
    const lines = await this.#list('iptables', chain.name).catch(() => [] as RuleLine[]);
    const ports: number[] = [];
    for (const l of lines) {
      const i = l.indexOf('--dport');
      if (i >= 0) ports.push(Number(l[i + 1]));
    }
    return ports.filter((p) => Number.isInteger(p));
  }

  /** Removes one network's rules (its jumps and chains). Repeat-safe. */
  async remove(set: EgressRuleSet, bridge: string): Promise<void> {
    for (const f of this.#families(set)) {
      for (const j of f.jumps)
        while (
          await this.#run(f.command, ['-D', j.from, ...jumpArgs(set, bridge, j.to)]).then(
            () => true,
            () => false,
          )
        );
      for (const c of f.chains) {
        await this.#run(f.command, ['-F', c.name]).catch(() => {});
        await this.#run(f.command, ['-X', c.name]).catch(() => {});
      }
    }
  }

  /** Rules tagged `preview-egress:` in the filter table (as `iptables -S` lines), for listing. */
  async listTagged(): Promise<string[]> {
    const out: string[] = [];
    for (const command of this.#commands())
      for (const l of await this.#list(command).catch(() => [] as RuleLine[]))
        if (l.some((a) => a.startsWith(TAG_PREFIX))) out.push(`${command} ${l.join(' ')}`);
    return out;
  }

  #commands(): ('iptables' | 'ip6tables')[] {
    return this.#ipv6 ? ['iptables', 'ip6tables'] : ['iptables'];
  }

  async #list(command: string, chain?: string): Promise<RuleLine[]> {
    const { stdout } = await this.#run(command, chain ? ['-S', chain] : ['-S']);
    return stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) =>
        l
          .trim()
          .split(/\s+/)
          .map((a) => a.replace(/^"(.*)"$/, '$1')),
      );
  }

  async #run(command: string, args: string[]): Promise<{ stdout: string }> {
    try {
      return await exec(command, ['-w', ...args], { encoding: 'utf8' });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: string };
      if (err.code === 'ENOENT')
        throw new TierUnavailableError(
          'tier_unavailable',
          `${command} not found: egress rules need it (install iptables)`,
          { tier: 'docker', cause: e },
        );
      throw new Error(`${command} ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`, { cause: e });
    }
  }

  #restore(command: string, script: string): Promise<void> {
    const bin = `${command}-restore`;
    return new Promise((resolve, reject) => {
      const child = spawn(bin, ['-w', '--noflush'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString('utf8');
      });
      child.on('error', (e: NodeJS.ErrnoException) =>
        reject(
          e.code === 'ENOENT'
            ? new TierUnavailableError(
                'tier_unavailable',
                `${bin} not found: egress rules need it (install iptables)`,
                { tier: 'docker', cause: e },
              )
            : e,
        ),
      );
      child.on('close', (code) =>
        code === 0
          ? resolve()
          : reject(
              new TierUnavailableError(
                'tier_unavailable',
                `${bin} failed (${code}): ${stderr.trim()} (egress rules need root or CAP_NET_ADMIN on the host)`,
                { tier: 'docker' },
              ),
            ),
      );
      child.stdin.end(script);
    });
  }
}
