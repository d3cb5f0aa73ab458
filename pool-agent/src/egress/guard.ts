import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { ContainerRuntime } from '../runtime/types.ts';
import { EgressFirewall } from './firewall.ts';
import { type RegistryProxy, registryHosts, startRegistryProxy } from './proxy.ts';
import { type EgressMode, type EgressRuleSet, type EgressTarget, egressRules } from './rules.ts';

/** The npm registry every image's npm uses unless told otherwise. */
export const DEFAULT_REGISTRY = 'https://registry.npmjs.org/';

export interface EgressGuardOptions {
  runtime: Pick<ContainerRuntime, 'network'>;
  /** `PREVIEW_EGRESS`. */
  mode: EgressMode;
  /** `PREVIEW_EGRESS_REGISTRY`: the registry the proxy lets through (registry-only). @default DEFAULT_REGISTRY */
  registry?: string;
  /** `PREVIEW_EGRESS_PROXY_PORT`: the proxy's port on the gateway; 0 picks one. @default 0 */
  proxyPort?: number;
  /** Other TCP ports on the gateway previews may reach (the database forwarder's). */
  hostPorts: number[];
  /** `PREVIEW_EGRESS_ENFORCE`: refuse to start when the rules cannot be set (else a warning). @default true */
  enforce?: boolean;
  /** `PREVIEW_EGRESS_CHECK_MS`: how often the rules are checked and re-applied; 0 never. @default 0 */
  checkMs?: number;
  firewall?: EgressFirewall;
  log?: Logger | undefined;
}

/**
 * The egress policy of one agent's preview network: the firewall rules (set at start, checked and
 * re-applied by {@link ensure}: at reconcile and every `checkMs`), the registry proxy
 * (registry-only), and the environment every sandbox needs to use it. Nothing for a runtime whose
 * sandboxes share the host network (host processes): there is no bridge to filter.
 *
 * @throws TierUnavailableError when the rules cannot be set and `enforce` is on.
 * @example
 * const guard = await EgressGuard.start({ runtime, mode: 'registry-only', hostPorts: [forwarder.port], log });
 * const env = { ...guard.sandboxEnv }; // npm_config_proxy, HTTPS_PROXY, …
 */
export class EgressGuard {
  readonly #o: EgressGuardOptions;
  readonly #fw: EgressFirewall;
  readonly #target: EgressTarget | undefined;
  #set: EgressRuleSet | undefined;
  readonly #proxy: RegistryProxy | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #warned = false;

  private constructor(
    o: EgressGuardOptions,
    fw: EgressFirewall,
    net?: { target: EgressTarget; proxy: RegistryProxy | undefined },
  ) {
    this.#o = o;
    this.#fw = fw;
    this.#target = net?.target;
    this.#proxy = net?.proxy;
    if (net && o.checkMs) {
      this.#timer = setInterval(() => void this.ensure().catch(() => {}), o.checkMs);
      this.#timer.unref();
    }
  }

  static async start(o: EgressGuardOptions): Promise<EgressGuard> {
    const fw = o.firewall ?? new EgressFirewall({ log: o.log });
    const net = o.runtime.network;
    if (net.kind === 'host') {
      o.log?.warn('sandboxes share the host network: no egress rules (use the docker runtime for them)');
      return new EgressGuard(o, fw);
    }
    if (!net.address || !net.bridge || !net.name) {
      const msg = 'preview network has no gateway or bridge interface: egress rules cannot be set';
      if (o.enforce ?? true) throw new Error(msg);
      o.log?.warn(msg);
      return new EgressGuard(o, fw);
    }
    const proxy =
      o.mode === 'registry-only'
        ? await startRegistryProxy({
            listenHost: net.address,
            listenPort: o.proxyPort ?? 0,
            allow: registryHosts(o.registry ?? DEFAULT_REGISTRY),
            log: o.log,
          })
        : undefined;
    const target: EgressTarget = {
      network: net.name,
      bridge: net.bridge,
      gateway: net.address,
      mode: o.mode,
      hostPorts: [...o.hostPorts, ...(proxy ? [proxy.port] : [])],
    };
    const guard = new EgressGuard(o, fw, { target, proxy });
    try {
      await guard.ensure();
    } catch (e) {
      if (o.enforce ?? true) {
        await guard.close();
        throw e;
      }
      o.log?.warn(
        { err: e },
        'egress rules could not be set; previews are NOT filtered (PREVIEW_EGRESS_ENFORCE=false)',
      );
    }
    return guard;
  }

  /** Where previews reach the registry proxy, when there is one. */
  get proxy(): { host: string; port: number; url: string } | undefined {
    return this.#proxy && { host: this.#proxy.host, port: this.#proxy.port, url: this.#proxy.url };
  }

  /** The rule set in force (undefined without a bridge). */
  get rules(): EgressRuleSet | undefined {
    return this.#set;
  }

  /**
   * What every sandbox's environment needs: with the proxy, npm's and the usual proxy variables
   * (installs and `postinstall` downloads go through it), and `npm_config_registry` for a registry
   * other than npm's.
   */
  get sandboxEnv(): Record<string, string> {
    if (!this.#proxy) return {};
    const url = this.#proxy.url;
    const noProxy = 'localhost,127.0.0.1,::1';
    const registry = this.#o.registry ?? DEFAULT_REGISTRY;
    return {
      npm_config_proxy: url,
      npm_config_https_proxy: url,
      HTTP_PROXY: url,
      HTTPS_PROXY: url,
      http_proxy: url,
      https_proxy: url,
      NO_PROXY: noProxy,
      no_proxy: noProxy,
      ...(registry !== DEFAULT_REGISTRY ? { npm_config_registry: registry } : {}),
    };
  }

  /**
   * Checks the rules and re-applies them when missing or stale, and removes the rules of networks
   * whose bridge is gone. The host ports let through are this agent's plus those another agent on
   * the same network left that still have a listener on the gateway. Concurrent calls share one run.
   */
  ensure(): Promise<void> {
    const t = this.#target;
    if (!t) return Promise.resolve();
    const run = this.#run(t);
    if (this.#o.enforce ?? true) return run;
    // Not enforced (npm start, the local compose cluster): a failed check is a warning, once, and
    // never stops reconcile or the agent.
    return run.catch((e) => {
      if (this.#warned) return;
      this.#warned = true;
      this.#o.log?.warn(
        { err: e },
        'egress rules could not be set; previews are NOT filtered (PREVIEW_EGRESS_ENFORCE=false)',
      );
    });
  }

  #run(t: EgressTarget): Promise<void> {
    this.#checking ??= (async () => {
      try {
        const others = await this.#fw.hostPorts(egressRules(t));
        const listening = await listeningPorts(t.gateway);
        const ports = new Set([...t.hostPorts, ...others.filter((p) => listening.has(p))]);
        const set = egressRules({ ...t, hostPorts: [...ports] });
        this.#set = set;
        if (await this.#fw.ensure(set, t.bridge))
          this.#o.log?.info({ bridge: t.bridge }, 'egress rules (re)applied');
        await this.#fw.sweep((b) => existsSync(`/sys/class/net/${b}`));
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }

  /** Removes this network's rules (when its network is removed). Repeat-safe. */
  async removeRules(): Promise<void> {
    if (this.#target) await this.#fw.remove(egressRules(this.#target), this.#target.bridge);
  }

  /** Stops the checks and the proxy. The rules stay: the sandboxes keep running without the agent. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#checking?.catch(() => {});
    await this.#proxy?.close();
  }
}

/** TCP ports with a listening socket bound to exactly `address` (IPv4), from /proc/net/tcp. */
export async function listeningPorts(address: string): Promise<Set<number>> {
  const hex = address
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .reverse()
    .join('')
    .toUpperCase();
  const out = new Set<number>();
  const text = await readFile('/proc/net/tcp', 'utf8').catch(() => '');
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const [addr, port] = (f[1] ?? '').split(':');
    if (f[3] === '0A' && addr === hex && port) out.add(Number.parseInt(port, 16));
  }
  return out;
}
