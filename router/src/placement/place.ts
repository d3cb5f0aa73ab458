import { TIER_ORDER, type TierCapacity, type TierName } from '@preview/tiers';
import type { PlacementReason } from '../store/sessions.ts';
import type { Classification } from './classify.ts';

/** What the editor's browser can run, as it reports it. */
export interface ClientCapabilities {
  /** WebContainers boot here (cross-origin isolated page, licence). */
  webcontainer: boolean;
  /** The esbuild-wasm bundler runtime works here. */
  bundler: boolean;
}

export interface PlacementPolicy {
  /** Tiers this deployment has (configured adapters). */
  enabled: readonly TierName[];
  /** Caller's wish: skip the browser tier (e.g. sharing a preview URL). */
  serverOnly?: boolean;
  /** The one tier the caller asked for (a move to a server tier); the others are skipped saying so. */
  only?: TierName;
}

export interface PlacementDecision {
  /** Tiers to try, in order. Empty: nothing can run this preview. */
  candidates: TierName[];
  reasons: PlacementReason[];
}

/**
 * Orders the tiers for one preview (pure). browser → docker → fly, each kept or skipped with a
 * reason a user could read.
 *
 * @example
 * place(classify(files), { webcontainer: true, bundler: true }, { docker: { available: 3, total: 10 } },
 *   { enabled: ['browser', 'docker'] })
 * // { candidates: ['browser', 'docker'], reasons: [...] }
 */
export function place(
  c: Classification,
  client: ClientCapabilities,
  capacity: Partial<Record<TierName, TierCapacity | undefined>>,
  policy: PlacementPolicy,
): PlacementDecision {
  const candidates: TierName[] = [];
  const reasons: PlacementReason[] = [];
  const skip = (tier: TierName, reason: string) => reasons.push({ tier, outcome: 'skipped', reason });
  for (const tier of TIER_ORDER) {
    if (!policy.enabled.includes(tier)) {
      skip(tier, `${tier} tier is not configured`);
      continue;
    }
    if (policy.only && tier !== policy.only) {
      skip(tier, `the ${policy.only} tier was asked for`);
      continue;
    }
    if (tier === 'browser') {
      const why = browserProblem(c, client, policy);
      if (why) {
        skip(tier, why);
        continue;
      }
    } else {
      const cap = capacity[tier];
      if (cap && cap.available <= 0) {
        skip(
          tier,
          cap.total === 0
            ? `${tier} tier has no live node (none registered, or still starting)`
            : `${tier} tier is full (${cap.total - cap.available}/${cap.total} in use)`,
        );
        continue;
      }
    }
    candidates.push(tier);
  }
  return { candidates, reasons };
}

function browserProblem(
  c: Classification,
  client: ClientCapabilities,
  policy: PlacementPolicy,
): string | undefined {
  if (policy.serverOnly) return 'server tier requested';
  if (c.nativeDeps.length) return `native dependencies WebContainers cannot run: ${c.nativeDeps.join(', ')}`;
  if (c.needsDatabase) return 'needs a database';
  if (c.fullStack) return 'full-stack app needs a server';
  if (!client.webcontainer && !client.bundler)
    return 'the browser reports neither WebContainers nor the bundler runtime';
  if (!client.webcontainer && c.template === 'next') return 'the bundler runtime cannot run Next.js';
  // react-native resolves through Metro (platform extensions, Flow sources, react-native-web aliases).
  if (!client.webcontainer && c.template === 'expo') return 'the bundler runtime cannot run Expo (Metro)';
  return undefined;
}
