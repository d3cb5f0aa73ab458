import type { TierSandbox, TierStatus } from '../types.ts';
import { LIVE } from './machine-lifecycle.ts';
import type { FlyMachine } from './machines-client.ts';

/**
 * A preview's status as its machine's state alone tells it: a stopped or suspended (or stopping,
 * suspending) machine is `suspended`, any other state but `started` is `starting`. `undefined` for a
 * started machine: then the daemon says how the preview is.
 */
export function statusOfMachine(state: string): TierStatus | undefined {
  if (['suspended', 'suspending', 'stopped', 'stopping'].includes(state))
    return { phase: 'suspended', message: `machine ${state}` };
  if (state !== 'started') return { phase: 'starting', message: `machine ${state}` };
  return undefined;
}

/** How many of the machines are live (count against the tier's capacity). */
export function liveCount(machines: FlyMachine[]): number {
  return machines.filter((m) => LIVE.has(m.state)).length;
}

/**
 * The previews on the live machines (metadata `preview_id`), with `createdAt` (epoch ms) when Fly
 * gave a parseable `created_at`.
 */
export function sandboxesOf(machines: FlyMachine[]): TierSandbox[] {
  const out: TierSandbox[] = [];
  for (const m of machines) {
    const previewId = m.config?.metadata?.['preview_id'];
    if (!previewId || !LIVE.has(m.state)) continue;
    const createdAt = m.created_at ? Date.parse(m.created_at) : Number.NaN;
    out.push(Number.isFinite(createdAt) ? { previewId, createdAt } : { previewId });
  }
  return out;
}
