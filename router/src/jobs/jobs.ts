import type { Logger } from 'pino';
import type { Metrics } from '../metrics.ts';
import type { NodeRegistry } from '../nodes.ts';
import type { PreviewDatabases, PreviewService } from '../previews.ts';
import type { Scheduler } from './scheduler.ts';

export interface JobDeps {
  previews: PreviewService;
  nodes: NodeRegistry;
  databases?: PreviewDatabases | undefined;
  log: Logger;
  metrics: Metrics;
  idleSuspendMs: number;
  idleDestroyMs: number;
}

/** Suspends ready previews idle for `idleSuspendMs`; destroys suspended ones idle for `idleDestroyMs`. */
export async function idleJob(d: JobDeps): Promise<{ suspended: number; destroyed: number }> {
  const now = Date.now();
  let suspended = 0;
  let destroyed = 0;
  for (const s of await d.previews.store.idle(['ready'], new Date(now - d.idleSuspendMs))) {
    try {
      await d.previews.suspendSession(s);
      suspended++;
    } catch (err) {
      d.log.warn({ err, previewId: s.id }, 'idle suspend failed');
    }
  }
  for (const s of await d.previews.store.idle(
    ['suspended', 'ready', 'failed'],
    new Date(now - d.idleDestroyMs),
  )) {
    try {
      if (await d.previews.destroy(s)) destroyed++;
    } catch (err) {
      d.log.warn({ err, previewId: s.id }, 'idle destroy failed');
    }
  }
  return { suspended, destroyed };
}

/**
 * Sessions on nodes that stopped heartbeating → `migrating`, re-placed from stored files;
 * sandboxes a live node reports that have no live session → destroyed.
 */
export async function reconcileJob(d: JobDeps): Promise<{ migrated: number; orphansDestroyed: number }> {
  let migrated = 0;
  let orphansDestroyed = 0;
  const byNode = new Map<string, string[]>();
  for (const { id, nodeId } of await d.previews.store.liveWithNodes())
    byNode.set(nodeId, [...(byNode.get(nodeId) ?? []), id]);
  for (const [nodeId, ids] of byNode) {
    if (await d.nodes.liveness.isAlive(nodeId)) continue;
    for (const id of ids) {
      const s = await d.previews.store.get(id);
      if (!s || s.nodeId !== nodeId) continue;
      try {
        await d.previews.migrate(s);
        migrated++;
      } catch (err) {
        d.log.warn({ err, previewId: id, nodeId }, 'migration failed');
      }
    }
  }
  const docker = d.previews.tiers.docker;
  if (docker) {
    for (const node of await d.nodes.list()) {
      const beat = await d.nodes.liveness.get(node.id);
      if (!beat) continue;
      const live = await d.previews.store.liveAmong(beat.sessions);
      for (const id of beat.sessions)
        if (!live.has(id) && (await docker.destroy(id).catch(() => false))) orphansDestroyed++;
    }
  }
  return { migrated, orphansDestroyed };
}

/** Registers idle, reconcile and (with db-isolation) the schema janitor. */
export function registerJobs(
  s: Scheduler,
  d: JobDeps,
  every: { idleMs: number; reconcileMs: number; janitorMs: number },
): void {
  const wrap = (job: string, fn: () => Promise<unknown>) => async () => {
    try {
      const r = await fn();
      d.metrics.jobRuns.inc({ job, outcome: 'ok' });
      d.log.debug({ job, result: r }, 'job ran');
      return r;
    } catch (err) {
      d.metrics.jobRuns.inc({ job, outcome: 'error' });
      throw err;
    }
  };
  s.every(
    'idle',
    every.idleMs,
    wrap('idle', () => idleJob(d)),
  );
  s.every(
    'reconcile',
    every.reconcileMs,
    wrap('reconcile', () => reconcileJob(d)),
  );
  const db = d.databases;
  if (db)
    s.every(
      'schema-janitor',
      every.janitorMs,
      wrap('schema-janitor', () => db.runJanitor()),
    );
}
