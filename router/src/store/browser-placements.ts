import type { BrowserPlacement, BrowserPlacementRecord, BrowserPlacements } from '@preview/tiers';
import type pg from 'pg';

/**
 * The browser tier's placements, read from `preview_sessions` (Postgres): the session row that
 * records every placement (`tier`, `placement`, `state`) is the record, so a restarted router and
 * every replica see the same browser previews.
 *
 * - `get`: the row's placement while the session is not `ended` or `failed` and its tier is
 *   `browser`; `suspended` is `state = 'suspended'`.
 * - `save` and `setSuspended` write nothing: the preview service records the placement and the state
 *   in the session's own transition right after the tier call.
 * - `remove`: true while the session is not `ended` (the service marks it `ended` after the call),
 *   false for an unknown or ended preview (repeat-safe).
 *
 * @example
 * createRouter({ ..., tiers: ({ browserPlacements }) => ({ browser: createBrowserTier({ placements: browserPlacements }) }) });
 */
export function sessionBrowserPlacements(pool: pg.Pool): BrowserPlacements {
  return {
    async get(previewId): Promise<BrowserPlacementRecord | undefined> {
      const r = await pool.query<{ placement: BrowserPlacement | null; state: string }>(
        `SELECT placement, state FROM preview_sessions
          WHERE id = $1 AND tier = 'browser' AND state NOT IN ('ended', 'failed')`,
        [previewId],
      );
      const placement = r.rows[0]?.placement;
      if (placement?.tier !== 'browser') return undefined;
      return { placement, suspended: r.rows[0]?.state === 'suspended' };
    },
    async save() {},
    async setSuspended() {},
    async remove(previewId) {
      const r = await pool.query(
        `SELECT 1 FROM preview_sessions WHERE id = $1 AND tier = 'browser' AND state <> 'ended'`,
        [previewId],
      );
      return (r.rowCount ?? 0) > 0;
    },
  };
}
