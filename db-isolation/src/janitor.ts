import { ConfigError, InvalidInputError } from '@preview/tiers';
import { type IsolationContext, REGISTRY, SESSIONS } from './context.ts';
import type { JanitorResult, StaleReason, StaleSchema } from './db-isolation.ts';
import { dropNames } from './drop.ts';
import { namesFor } from './names.ts';

/** `DbIsolation.listStale()` (see its docstring), optionally for one preview. */
export async function listStale(
  ctx: IsolationContext,
  opts: { cutoff: Date; previewId?: string },
): Promise<StaleSchema[]> {
  const { admin } = ctx;
  const cutoff = opts.cutoff;
  if (!(cutoff instanceof Date) || Number.isNaN(cutoff.getTime()))
    throw new InvalidInputError('invalid_cutoff', 'cutoff: must be a valid Date');
  const r = await admin.query<{
    preview_id: string;
    schema_name: string;
    role_name: string;
    reason: StaleReason;
  }>(
    `SELECT ps.preview_id::text, ps.schema_name, ps.role_name,
            CASE WHEN ps.state = 'dropping' THEN 'incomplete'
                 WHEN s.id IS NULL THEN 'no_session' ELSE 'ended' END AS reason
       FROM ${REGISTRY} ps LEFT JOIN ${SESSIONS} s ON s.id = ps.preview_id
      WHERE ps.state <> 'dropped' AND ($2::uuid IS NULL OR ps.preview_id = $2::uuid)
        AND (ps.state = 'dropping'
             OR (s.id IS NULL AND ps.created_at < $1)
             OR (s.state IN ('ended', 'failed') AND coalesce(s.ended_at, s.updated_at) < $1))
     UNION ALL
     SELECT substr(n.nspname, 9)::uuid::text, n.nspname, 'p_' || substr(n.nspname, 9), 'orphan'
       FROM pg_namespace n
      WHERE n.nspname ~ '^preview_[0-9a-f]{32}$'
        AND ($2::uuid IS NULL OR substr(n.nspname, 9)::uuid = $2::uuid)
        AND NOT EXISTS (SELECT 1 FROM ${REGISTRY} ps WHERE ps.schema_name = n.nspname AND ps.state <> 'dropped')
      ORDER BY 1`,
    [cutoff, opts.previewId ?? null],
  );
  return r.rows.map((row) => ({
    previewId: row.preview_id,
    schema: row.schema_name,
    role: row.role_name,
    reason: row.reason,
  }));
}

/** `DbIsolation.runJanitor()` (see its docstring). */
export async function runJanitor(
  ctx: IsolationContext,
  opts: {
    isLive: (previewIds: string[]) => Promise<Set<string>>;
    graceMs: number;
    now?: Date;
  },
): Promise<JanitorResult> {
  const { log } = ctx;
  if (typeof opts?.isLive !== 'function')
    throw new ConfigError('invalid_config', 'runJanitor: isLive: must be a function');
  if (!Number.isFinite(opts.graceMs) || opts.graceMs < 0)
    throw new ConfigError('invalid_config', 'runJanitor: graceMs: must be a number >= 0');
  const cutoff = new Date((opts.now ?? new Date()).getTime() - opts.graceMs);
  const result: JanitorResult = { dropped: [], skipped: [], failed: [], droppedSeedRoles: [] };
  result.droppedSeedRoles = await dropExpiredSeedRoles(ctx, opts.now ?? new Date());
  const candidates = await listStale(ctx, { cutoff });
  if (candidates.length === 0) return result;
  const live = await opts.isLive(candidates.map((c) => c.previewId));
  for (const c of candidates) {
    if (live.has(c.previewId)) {
      result.skipped.push({ previewId: c.previewId, reason: 'live' });
      continue;
    }
    const n = namesFor(c.previewId);
    try {
      const outcome = await dropNames(ctx, n, {
        skipLocked: true,
        // Re-checked under the preview's lock: a create() may have revived it since the listing.
        stillStale: async () => (await listStale(ctx, { cutoff, previewId: n.previewId })).length > 0,
      });
      if (outcome === 'dropped') result.dropped.push(c);
      else if (outcome === 'busy') result.skipped.push({ previewId: c.previewId, reason: 'busy' });
      else result.skipped.push({ previewId: c.previewId, reason: 'no_longer_stale' });
    } catch (e) {
      log.warn({ previewId: c.previewId, err: (e as Error).message }, 'janitor could not drop a schema');
      result.failed.push({ previewId: c.previewId, error: (e as Error).message });
    }
  }
  log.info(
    {
      dropped: result.dropped.length,
      skipped: result.skipped.length,
      failed: result.failed.length,
      seedRoles: result.droppedSeedRoles.length,
    },
    'schema janitor run',
  );
  return result;
}

/**
 * Drops the seed login roles (`ps_<32 hex>_<8 hex>`, see `seedPreview`) whose `VALID UNTIL` is before
 * `now`: a seed ends long before (its role lives at most 10 min), so such a role was left by a router
 * that died mid-seed. What it owns goes to its preview role (`p_<hex>`) when that still exists.
 * A role that cannot be dropped now is logged and tried again on the next run.
 * @returns the names dropped
 */
async function dropExpiredSeedRoles(ctx: IsolationContext, now: Date): Promise<string[]> {
  const { rows } = await ctx.admin.query<{ rolname: string; preview_role: string | null }>(
    `SELECT r.rolname, p.rolname AS preview_role
       FROM pg_roles r LEFT JOIN pg_roles p ON p.rolname = 'p_' || substr(r.rolname, 4, 32)
      WHERE r.rolname ~ '^ps_[0-9a-f]{32}_[0-9a-f]{8}$' AND r.rolvaliduntil < $1`,
    [now],
  );
  const dropped: string[] = [];
  for (const r of rows) {
    // Both names matched the pattern above (hex only): nothing here is caller text.
    const reassign = r.preview_role ? `REASSIGN OWNED BY ${r.rolname} TO ${r.preview_role}; ` : '';
    try {
      await ctx.admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [
        r.rolname,
      ]);
      await ctx.admin.query(`${reassign}DROP OWNED BY ${r.rolname}; DROP ROLE ${r.rolname}`);
      dropped.push(r.rolname);
    } catch (e) {
      ctx.log.warn({ role: r.rolname, err: (e as Error).message }, 'janitor could not drop a seed role');
    }
  }
  return dropped;
}
