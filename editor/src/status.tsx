import type { FaultLocation, PreviewSessionHandle } from '@preview/browser-runtime/react';
import type { ReactNode } from 'react';

/** One placement verdict as the router reports it (`reasons` of a preview). */
export interface Reason {
  tier: string;
  outcome: string;
  reason: string;
}

/** What the status bar shows. */
export interface StatusView {
  state: string;
  tier: string | null;
  node: string;
  reasons: readonly Reason[];
  phase: string;
  /** The error text, and where it points when it names a file (clickable). */
  error: { text: string; location?: FaultLocation | undefined } | null;
  sync: string;
  /** Last edit → update time, ms (the sandbox's `hmr` frame, or the browser runtime's apply). */
  updateMs: number | undefined;
  updateKind: string;
  note: string;
}

/** The status of a session as the bar shows it (`note` and `error` from the page's own actions win). */
export function statusOf(
  s: PreviewSessionHandle,
  reasons: readonly Reason[],
  extra: { note?: string; actionError?: string },
): StatusView {
  const placement = (s.preview?.placement ?? {}) as { nodeId?: string; nodeName?: string; runtime?: string };
  const e = s.error;
  return {
    state: s.state,
    tier: s.tier,
    node: placement.nodeName ?? placement.nodeId ?? placement.runtime ?? '',
    reasons,
    phase: s.status ? s.status.phase + (s.status.message ? `: ${s.status.message}` : '') : '',
    error: extra.actionError
      ? { text: extra.actionError }
      : e
        ? {
            text: e.message || e.detail,
            location: e.file
              ? {
                  file: e.file,
                  ...(e.line ? { line: e.line } : {}),
                  ...(e.column ? { column: e.column } : {}),
                }
              : undefined,
          }
        : null,
    sync: s.syncState === 'idle' ? '' : s.syncState,
    updateMs: s.lastUpdate?.ms,
    updateKind: s.lastUpdate?.kind ?? '',
    note: extra.note ?? '',
  };
}

/** `file:line:col` as far as known. */
const where = (l: FaultLocation) =>
  `${l.file}${l.line ? `:${l.line}` : ''}${l.line && l.column ? `:${l.column}` : ''}`;

/**
 * The status bar: state and tier, node, sync state, last edit → update, the status phase, the
 * error (its `file:line:col` opens the file when `onOpenLocation` is given) and the placement
 * reasons. `data-state` and `data-update-ms` carry the state and the last update time for tests.
 */
export function StatusBar(p: {
  view: StatusView;
  onOpenLocation?: ((l: FaultLocation) => void) | undefined;
}): ReactNode {
  const v = p.view;
  const head: string[] = [];
  if (v.state) head.push(`state: ${v.state}${v.tier ? ` on ${v.tier}` : ''}`);
  if (v.node) head.push(`node: ${v.node}`);
  if (v.sync) head.push(`sync: ${v.sync}`);
  if (v.updateMs !== undefined)
    head.push(`last edit → update: ${Math.round(v.updateMs)} ms (${v.updateKind})`);
  const loc = v.error?.location;
  return (
    <footer
      id="status"
      aria-live="polite"
      data-state={v.state}
      data-update-ms={v.updateMs === undefined ? '' : String(Math.round(v.updateMs))}
    >
      {head.length > 0 && <div>{head.join(' · ')}</div>}
      {v.phase && <div>status: {v.phase}</div>}
      {v.error && (
        <div className="error">
          error:{' '}
          {loc && p.onOpenLocation && (
            <>
              <button
                type="button"
                className="location"
                data-location={where(loc)}
                onClick={() => p.onOpenLocation?.(loc)}
              >
                {where(loc)}
              </button>{' '}
            </>
          )}
          {v.error.text}
        </div>
      )}
      {v.reasons.length > 0 && (
        <div>
          {`placement:\n${v.reasons.map((r) => `  ${r.tier}: ${r.outcome} — ${r.reason}`).join('\n')}`}
        </div>
      )}
      {v.note && <div>{v.note}</div>}
    </footer>
  );
}
