import type { TemplateName } from '@preview/tiers';
import type { Logger } from 'pino';
import { linkTo } from './daemon-client.ts';
import type { WarmPools } from './pool.ts';
import type { PreviewState, PreviewTable } from './previews.ts';
import type { ContainerRuntime, SandboxInfo } from './runtime/types.ts';

/** What to do with one sandbox found at start. */
export type SandboxPlan =
  | { action: 'adopt'; previewId: string; state: PreviewState }
  | { action: 'keep' }
  | { action: 'remove'; why: string }
  | { action: 'warm-if-healthy' };

/**
 * The decision for one sandbox found at start: a claimed one is adopted when its session is live
 * (all are, when nobody can say: `live` undefined), with its state read from the sandbox; an
 * unclaimed one may join its warm pool while the pool is below target and the sandbox is healthy.
 *
 * @example
 * planSandbox(box, { live: new Set(['p1']), tracked: () => false, warmWanted: () => true });
 */
export function planSandbox(
  box: SandboxInfo,
  o: {
    live: Set<string> | undefined;
    tracked(previewId: string): boolean;
    warmWanted(t: TemplateName): boolean;
  },
): SandboxPlan {
  if (box.previewId) {
    if (o.live && !o.live.has(box.previewId)) return { action: 'remove', why: 'its session is not live' };
    if (o.tracked(box.previewId)) return { action: 'keep' };
    const state: PreviewState = box.exit
      ? { kind: 'failed', reason: box.exit.reason }
      : box.state === 'paused'
        ? { kind: 'suspended' }
        : { kind: 'ready' };
    return { action: 'adopt', previewId: box.previewId, state };
  }
  if (box.state !== 'running') return { action: 'remove', why: `an unclaimed sandbox that is ${box.state}` };
  return o.warmWanted(box.template)
    ? { action: 'warm-if-healthy' }
    : { action: 'remove', why: 'pool is full' };
}

export interface ReconcileContext {
  runtime: Pick<ContainerRuntime, 'list' | 'remove'>;
  pools: Pick<WarmPools, 'adopt' | 'counts'>;
  table: PreviewTable;
  /** Warm-pool targets per template. */
  targets: Partial<Record<TemplateName, number>>;
  /** The live sessions of this node, or `undefined` when nobody can say. */
  liveSessions(): Promise<string[] | undefined>;
  /** The egress policy: its rules are checked and re-applied before any sandbox is adopted. */
  egress?: { ensure(): Promise<void> };
  log: Logger;
}

/**
 * Re-applies the egress rules when missing, then adopts the sandboxes labelled with this node whose session is live (all claimed ones when nobody
 * can say), keeps healthy warm ones in their pool up to its target, and removes the rest.
 * Returns the adopted previews.
 */
export async function reconcile(c: ReconcileContext): Promise<string[]> {
  await c.egress?.ensure();
  const live = await c.liveSessions();
  const liveSet = live ? new Set(live) : undefined;
  const adopted: string[] = [];
  for (const box of await c.runtime.list()) {
    const plan = planSandbox(box, {
      live: liveSet,
      tracked: (id) => c.table.find(id) !== undefined,
      warmWanted: (t) => (c.targets[t] ?? 0) > (c.pools.counts()[t] ?? 0),
    });
    if (plan.action === 'adopt') {
      c.table.add({ id: plan.previewId, box, link: linkTo(box), state: plan.state, relays: new Set() });
      adopted.push(plan.previewId);
      c.log.info({ sandboxId: box.id, previewId: plan.previewId, state: plan.state.kind }, 'adopted sandbox');
    } else if (plan.action === 'warm-if-healthy' && (await healthy(box))) await c.pools.adopt(box);
    else if (plan.action !== 'keep') {
      c.log.info(
        {
          sandboxId: box.id,
          previewId: box.previewId,
          why: plan.action === 'remove' ? plan.why : 'unhealthy',
        },
        'removing sandbox',
      );
      await c.runtime.remove(box.id);
    }
  }
  return adopted;
}

async function healthy(box: SandboxInfo): Promise<boolean> {
  return await fetch(`${box.upstream}/__preview/health`, { signal: AbortSignal.timeout(2000) })
    .then(async (r) => {
      await r.body?.cancel();
      return r.status === 200;
    })
    .catch(() => false);
}

/** How often a running agent looks for stray sandboxes (see {@link sweepStrays}), ms. */
export const STRAY_SWEEP_MS = 30_000;
/** How long a claimed sandbox may be seen untracked before {@link sweepStrays} removes it, ms. */
export const STRAY_GRACE_MS = 60_000;

/**
 * One sweep of a running agent: a sandbox claimed for a preview (labelled or named for it) that the
 * agent does not track and no claim in flight is making, seen so for `graceMs` (across sweeps, in
 * `seen`: sandbox id → first seen untracked, ms), is removed. Such a sandbox is what a claim leaves
 * when it fails between the engine creating the container and the agent tracking it (a remove that
 * failed, an engine slow to answer): nothing else would ever remove it, nor report it to the router.
 * Returns the removed sandbox ids.
 */
export async function sweepStrays(c: {
  runtime: Pick<ContainerRuntime, 'list' | 'remove'>;
  table: Pick<PreviewTable, 'find'>;
  /** A claim of this preview is in flight. */
  claiming(previewId: string): boolean;
  seen: Map<string, number>;
  graceMs: number;
  now: number;
  log: Logger;
}): Promise<string[]> {
  const removed: string[] = [];
  const listed = new Set<string>();
  for (const box of await c.runtime.list()) {
    listed.add(box.id);
    const id = box.previewId;
    if (!id || c.table.find(id)?.box.id === box.id || c.claiming(id)) {
      c.seen.delete(box.id);
      continue;
    }
    const first = c.seen.get(box.id) ?? c.now;
    c.seen.set(box.id, first);
    if (c.now - first < c.graceMs) continue;
    c.log.warn({ id: box.id, previewId: id, state: box.state }, 'removing a stray sandbox no preview holds');
    await c.runtime.remove(box.id).catch((err: unknown) => c.log.warn({ err, id: box.id }, 'remove failed'));
    c.seen.delete(box.id);
    removed.push(box.id);
  }
  for (const id of c.seen.keys()) if (!listed.has(id)) c.seen.delete(id);
  return removed;
}

/** Runs {@link sweepStrays} every STRAY_SWEEP_MS (timer unref'd); returns the function that stops it. */
export function startStraySweep(c: {
  runtime: Pick<ContainerRuntime, 'list' | 'remove'>;
  table: Pick<PreviewTable, 'find'>;
  claiming(previewId: string): boolean;
  log: Logger;
}): () => void {
  const seen = new Map<string, number>();
  const timer = setInterval(() => {
    void sweepStrays({ ...c, seen, graceMs: STRAY_GRACE_MS, now: Date.now() }).catch((err: unknown) =>
      c.log.warn({ err }, 'stray sandbox sweep failed'),
    );
  }, STRAY_SWEEP_MS);
  timer.unref();
  return () => clearInterval(timer);
}
