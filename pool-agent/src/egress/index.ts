export { EgressFirewall, type EgressFirewallOptions } from './firewall.ts';
export { DEFAULT_REGISTRY, EgressGuard, type EgressGuardOptions } from './guard.ts';
export { type AllowedHost, type RegistryProxy, registryHosts, startRegistryProxy } from './proxy.ts';
export {
  DENIED_V4,
  type EgressMode,
  type EgressRuleSet,
  type EgressTarget,
  egressRules,
  type FamilyRules,
  jumpArgs,
  restoreScript,
  TAG_PREFIX,
} from './rules.ts';
