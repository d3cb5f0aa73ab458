import type { Logger } from 'pino';
import type { Metrics } from '../metrics.ts';
import type { NodeRegistry } from '../nodes.ts';
import { PLACING_TOUCH_MS, type PreviewDatabases, type PreviewService } from '../previews.ts';
import type { ProjectStore } from '../store/projects.ts';
import type { Scheduler } from './scheduler.ts';

export interface JobDeps {
  previews: PreviewService;
  nodes: NodeRegistry;
  databases?: PreviewDatabases | undefined;
  log: Logger;
  metrics: Metrics;
  idleSuspendMs: number;
  idleDestroyMs: number;
  /** Projects: with `retentionMs`, the retention job runs; the schema janitor keeps their databases. */
  projects?: ProjectStore | undefined;
  /** A project without use for this long is purged (`retentionMs(config)`). */
  retentionMs?: number | undefined;
  /**
   * A sandbox younger than this is never taken for an orphan (its session row may be a moment behind
   * it). Default 2 minutes.
   */
  orphanGraceMs?: number;
  /**
   * A node's heartbeat TTL (`NODE_TTL_MS`): a node without a beat is taken for dead only when the
   * liveness store has kept beats for at least this long (`NodeLiveness.keptSince`: after a Redis
   * restart, every node looks dead until its next heartbeat). Default 15 s.
   */
  nodeTtlMs?: number;
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
 * How long a session may sit in `provisioning` or `migrating` without its placing replica touching it
 * (every PLACING_TOUCH_MS) before reconcile takes it for abandoned, ms.
 */
export const PLACING_STALE_MS = 6 * PLACING_TOUCH_MS;

/**
 * A session a live node's heartbeat leaves out is taken for lost only if it was placed (its last
 * state change) at least this long before the node took that beat, ms: a claim that had just
 * finished when the beat was taken is not in it yet.
 */
export const LOST_AFTER_MS = 5_000;

/**
 * Sessions on nodes that stopped heartbeating, or that a live node's heartbeat no longer lists
 * (placed there {@link LOST_AFTER_MS} before it) → `migrating`, re-placed from stored files;
 * creates and migrations whose replica died mid-placement → taken over (placed from stored files);
 * sandboxes with no live session → destroyed: those a live node reports in its heartbeat (docker),
 * and those a tier lists itself (`Tier.sandboxes`: fly machines), once past `orphanGraceMs`.
 */
export async function reconcileJob(d: JobDeps): Promise<{
  migrated: number;
  orphansDestroyed: number;
  stuckFailed: number;
  createsTakenOver: number;
  watched: number;
}> {
  let migrated = 0;
  let createsTakenOver = 0;
  let orphansDestroyed = 0;
  let stuckFailed = 0;
  // A placement in flight touches its row every PLACING_TOUCH_MS; one untouched for longer than
  // PLACING_STALE_MS lost its replica (killed, restarted) mid-way.
  const stale = new Date(Date.now() - PLACING_STALE_MS);
  // `provisioning` left behind (its replica died mid-create): this replica places it from the
  // files stored with it, if no other one took it first; one with no files is failed.
  for (const s of await d.previews.store.stuck('provisioning', stale)) {
    const taken = await d.previews.store.claimStale(s.id, 'provisioning', stale);
    if (!taken) continue;
    try {
      if (await d.previews.continueCreate(taken)) {
        createsTakenOver++;
        continue;
      }
    } catch (err) {
      d.log.warn({ err, previewId: s.id }, 'taking over an abandoned create failed');
    }
    try {
      await d.previews.changeState(
        s.id,
        { type: 'state', state: 'failed', error: 'placement did not finish', at: Date.now() },
        { error: 'placement did not finish (router restarted?)' },
      );
      stuckFailed++;
    } catch {
      // Placed or failed meanwhile (by the takeover itself, or another replica).
    }
  }
  // `migrating` left behind (it has no node any more, so nothing else would ever move it): this
  // replica takes the migration over, if no other one did first.
  for (const s of await d.previews.store.stuck('migrating', stale)) {
    const taken = await d.previews.store.claimStale(s.id, 'migrating', stale);
    if (!taken) continue;
    try {
      await d.previews.continueMigration(taken);
      migrated++;
    } catch (err) {
      d.log.warn({ err, previewId: s.id }, 'taking over an abandoned migration failed');
    }
  }
  // `starting` sessions are tracked by the replica that placed them; if it is gone, this one takes over.
  const starting = await d.previews.store.stuck('starting', new Date(Date.now() - 30_000));
  for (const s of starting) d.previews.watchReadiness(s.id);
  const byNode = new Map<string, string[]>();
  for (const { id, nodeId } of await d.previews.store.liveWithNodes())
    byNode.set(nodeId, [...(byNode.get(nodeId) ?? []), id]);
  // Beats lost with a restarted Redis say nothing of the nodes: none is dead before a TTL has passed.
  const beatsKnown =
    byNode.size > 0 && Date.now() - (await d.nodes.liveness.keptSince()) >= (d.nodeTtlMs ?? 15_000);
  for (const [nodeId, ids] of byNode) {
    if (!beatsKnown) continue;
    // A live node's heartbeat lists what it holds: a session placed there before the beat was taken
    // and not in it is gone with its sandbox (the agent restarted within a node TTL, its sandboxes
    // removed with the old process), and is re-placed like those of a dead node.
    const beat = await d.nodes.liveness.get(nodeId);
    if (beat?.registered) continue;
    const held = beat && new Set(beat.sessions);
    for (const id of ids) {
      if (held?.has(id)) continue;
      const s = await d.previews.store.get(id);
      if (!s || s.nodeId !== nodeId) continue;
      if (beat && s.updatedAt.getTime() > beat.at - LOST_AFTER_MS) continue;
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
      // Live here: its session is placed on this node. Anything else this node runs is left over
      // (the session ended, or moved to another node while this one was unreachable).
      const live = await d.previews.store.liveAmong(beat.sessions, { tier: 'docker', nodeId: node.id });
      for (const id of beat.sessions)
        if (!live.has(id) && (await docker.destroy(id, { nodeId: node.id }).catch(() => false)))
          orphansDestroyed++;
    }
  }
  const before = Date.now() - (d.orphanGraceMs ?? 2 * 60_000);
  for (const tier of Object.values(d.previews.tiers)) {
    if (!tier?.sandboxes) continue;
    let held: Awaited<ReturnType<NonNullable<typeof tier.sandboxes>>>;
    try {
      held = await tier.sandboxes();
    } catch (err) {
      d.log.warn({ err, tier: tier.name }, 'listing sandboxes failed');
      continue;
    }
    const old = held.filter((x) => x.createdAt === undefined || x.createdAt < before);
    const live = await d.previews.store.liveAmong(
      old.map((x) => x.previewId),
      { tier: tier.name },
    );
    for (const { previewId } of old) {
      if (live.has(previewId)) continue;
      try {
        if (await tier.destroy(previewId)) {
          orphansDestroyed++;
          d.log.info({ previewId, tier: tier.name }, 'orphaned sandbox destroyed');
        }
      } catch (err) {
        d.log.warn({ err, previewId, tier: tier.name }, 'destroying an orphaned sandbox failed');
      }
    }
  }
  if (orphansDestroyed > 0) d.metrics.orphansReaped.inc(orphansDestroyed);
  return { migrated, orphansDestroyed, stuckFailed, createsTakenOver, watched: starting.length };
}

/**
 * Retention: projects without use for `retentionMs` (no open, edit or page view; see
 * `ProjectStore.idle`) lose their preview rows, stored files, events and database schema. Each
 * candidate is re-checked in the purge's own transaction, so a project used since the listing is
 * kept; a purge is logged and counted (`preview_retention_purges_total{outcome}`), and a second run
 * (another replica) finds it `absent`. A schema drop that fails is logged; the schema janitor
 * finishes it (the schema then belongs to no session and no project). Ended previews created
 * without a `projectId` go the same way after the same time (`retainEndedPreviews`).
 */
export async function retentionJob(
  d: JobDeps & { projects: ProjectStore; retentionMs: number },
  now = Date.now(),
): Promise<{ purged: number; kept: number; failed: number }> {
  const before = new Date(now - d.retentionMs);
  let purged = 0;
  let kept = 0;
  let failed = 0;
  for (const p of await d.projects.idle(before)) {
    try {
      const r = await d.projects.purge(p, before);
      d.metrics.retentionPurges.inc({ outcome: r.outcome });
      if (r.outcome !== 'purged') {
        kept++;
        d.log.info(
          { userId: p.userId, projectId: p.projectId, outcome: r.outcome },
          'retention kept a project',
        );
        continue;
      }
      purged++;
      let schemaDropped = false;
      try {
        schemaDropped = (await d.databases?.drop(r.databaseId)) ?? false;
      } catch (err) {
        d.log.warn(
          { err, databaseId: r.databaseId },
          'retention: schema drop failed; the janitor finishes it',
        );
      }
      d.log.info(
        {
          userId: p.userId,
          projectId: p.projectId,
          lastUsedAt: p.lastUsedAt.toISOString(),
          databaseId: r.databaseId,
          previews: r.previews,
          files: r.files,
          events: r.events,
          schemaDropped,
        },
        'retention purged an idle project',
      );
    } catch (err) {
      failed++;
      d.metrics.retentionPurges.inc({ outcome: 'error' });
      d.log.warn({ err, userId: p.userId, projectId: p.projectId }, 'retention purge failed');
    }
  }
  const loose = await retainEndedPreviews({ ...d, before });
  return { purged: purged + loose.purged, kept: kept + loose.kept, failed: failed + loose.failed };
}

/**
 * Retention of ended previews created without a `projectId` (no project to purge them with): those
 * whose last use (end, edit, view) is before `before` lose their row, stored files, events and
 * schema, each re-checked in its purge's transaction; logged and counted like projects.
 */
async function retainEndedPreviews(
  d: JobDeps & { projects: ProjectStore; before: Date },
): Promise<{ purged: number; kept: number; failed: number }> {
  let purged = 0;
  let kept = 0;
  let failed = 0;
  for (const p of await d.projects.idleEndedPreviews(d.before)) {
    try {
      const r = await d.projects.purgeEndedPreview(p.previewId, d.before);
      d.metrics.retentionPurges.inc({ outcome: r.outcome });
      if (r.outcome !== 'purged') {
        kept++;
        d.log.info({ previewId: p.previewId, outcome: r.outcome }, 'retention kept an ended preview');
        continue;
      }
      purged++;
      let schemaDropped = false;
      try {
        schemaDropped = (await d.databases?.drop(p.previewId)) ?? false;
      } catch (err) {
        d.log.warn({ err, previewId: p.previewId }, 'retention: schema drop failed; the janitor finishes it');
      }
      d.log.info(
        {
          previewId: p.previewId,
          userId: p.userId,
          lastUsedAt: p.lastUsedAt.toISOString(),
          files: r.files,
          events: r.events,
          schemaDropped,
        },
        'retention purged an ended preview',
      );
    } catch (err) {
      failed++;
      d.metrics.retentionPurges.inc({ outcome: 'error' });
      d.log.warn({ err, previewId: p.previewId }, 'retention purge of an ended preview failed');
    }
  }
  return { purged, kept, failed };
}

/** Registers idle, reconcile, retention and (with db-isolation) the schema janitor. */
export function registerJobs(
  s: Scheduler,
  d: JobDeps,
  every: { idleMs: number; reconcileMs: number; janitorMs: number; retentionMs?: number },
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
  const { projects, retentionMs } = d;
  if (projects && retentionMs !== undefined && every.retentionMs)
    s.every(
      'retention',
      every.retentionMs,
      wrap('retention', () => retentionJob({ ...d, projects, retentionMs })),
    );
  const db = d.databases;
  if (db)
    s.every(
      'schema-janitor',
      every.janitorMs,
      // A schema younger than the grace period may belong to a create still in flight.
      wrap('schema-janitor', () =>
        db.runJanitor({
          // A project's database is kept while the project exists (retention drops it).
          isLive: async (ids) => {
            const live = await d.previews.store.liveAmong(ids);
            for (const id of (await d.projects?.databasesAmong(ids)) ?? []) live.add(id);
            return live;
          },
          graceMs: 10 * 60_000,
        }),
      ),
    );
}
