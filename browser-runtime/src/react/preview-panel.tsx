import { RUNTIME_ERROR_MESSAGE, type RuntimeErrorMessage } from '@preview/tiers';
import { type CSSProperties, type ReactNode, useEffect, useRef, useState } from 'react';
import { type MountedPreview, type MountOptions, mountPreview } from '../mount.ts';
import type { PreviewFault } from './session-store.ts';
import type { PreviewSessionHandle } from './use-preview-session.ts';

/** Props of `PreviewPanel`. */
export interface PreviewPanelProps {
  /** What `usePreviewSession` returned. */
  session: PreviewSessionHandle;
  /**
   * Passed to `mountPreview` (browser runtimes' options, `serverTier` for the fallback, `sandbox`,
   * `title`); `files`, `router`, `signal` and `onStatus` are the panel's.
   */
  mountOptions?: Omit<MountOptions, 'files' | 'router' | 'signal' | 'onStatus'>;
  /** Log lines on the status page. @default 12 */
  statusLines?: number;
  /** Class of the panel's outer element. */
  className?: string;
  /** Merged over the panel's own style (`position: relative`, 100% × 100%, `overflow: hidden`). */
  style?: CSSProperties;
  /** Replaces the status page shown until the preview is ready. */
  renderStatus?: (session: PreviewSessionHandle) => ReactNode;
  /** Replaces the error overlay. */
  renderError?: (error: PreviewFault, dismiss: () => void) => ReactNode;
  /**
   * Makes the overlay's `file:line:col` a button: called with the error's location when clicked
   * (an editor opens that file with the cursor on that line).
   */
  onOpenLocation?: (location: FaultLocation) => void;
  /**
   * Called with the mounted preview once it is shown (e.g. to `reload()` its frame), and with
   * `undefined` when it is taken down.
   */
  onMounted?: (mounted: MountedPreview | undefined) => void;
}

/** Where an error points, when it names a file: 1-based line and column when known. */
export interface FaultLocation {
  file: string;
  line?: number;
  column?: number;
}

const fill: CSSProperties = { position: 'absolute', inset: 0 };
/** How long a browser-tier mount waits for the panel's previous runtime to be torn down, ms. */
const TEARDOWN_WAIT_MS = 10_000;
const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const over = (s: string) => s === 'failed' || s === 'ended' || s === 'stopping';

/** Where an error points, as `file:line:column` (what is known of it), or null. */
export function faultLocation(e: Pick<PreviewFault, 'file' | 'line' | 'column'>): string | null {
  if (!e.file) return null;
  return `${e.file}${e.line ? `:${e.line}` : ''}${e.line && e.column ? `:${e.column}` : ''}`;
}

/**
 * The preview of a `usePreviewSession` session: the status page (state, status, last log lines)
 * until it can be shown, then `mountPreview` in the panel (an iframe on a server tier's preview
 * URL, or the browser runtime in this tab, falling back to a server tier under the same id), and an
 * error overlay (file, line, message) while the preview reports a build/runtime error (a runtime
 * error of a server-tier app arrives from its frame as the router's `RUNTIME_ERROR_MESSAGE`). The panel
 * fills its parent (`position: relative`, 100% × 100%) unless `style` says otherwise.
 *
 * Elements carry `data-preview` attributes (`status`, `frame`, `error`, `error-location`,
 * `error-message`) for styling and tests.
 *
 * @example
 * <div style={{ height: 480 }}><PreviewPanel session={session} /></div>
 */
export function PreviewPanel(props: PreviewPanelProps): ReactNode {
  const { session } = props;
  const { store, previewId, tier, state } = session;
  const host = useRef<HTMLDivElement>(null);
  const latest = useRef(session);
  latest.current = session;
  const optionsRef = useRef(props.mountOptions);
  optionsRef.current = props.mountOptions;
  const onMountedRef = useRef(props.onMounted);
  onMountedRef.current = props.onMounted;
  const [shown, setShown] = useState(false);
  /** Settles when the last mount of this panel has been taken down. */
  const torndown = useRef<Promise<unknown>>(Promise.resolve());
  const [mountStatus, setMountStatus] = useState<string | null>(null);

  // A server tier is framed once its URL is known: a move learnt over SSE (a state event carries
  // the tier, not the link) waits for the store's refresh to bring the fresh previewUrl.
  const showable =
    !!previewId &&
    !!tier &&
    !over(state) &&
    (tier === 'browser' || (!!session.previewUrl && (state === 'ready' || (shown && state === 'suspended'))));

  // biome-ignore lint/correctness/useExhaustiveDependencies: a tier change (moved to a server tier) mounts again
  useEffect(() => {
    const el = host.current;
    if (!showable || !el || !previewId) return;
    const ac = new AbortController();
    let mounted: MountedPreview | undefined;
    let cancelled = false;
    const mount = async () => {
      const s = latest.current;
      // A browser runtime waits for the previous one of this panel to be gone (a bundler runtime
      // clears its cache by id), for TEARDOWN_WAIT_MS at most. A server tier's frame shares nothing
      // with it: a move is shown at once, not after a teardown that may never settle.
      if (s.tier === 'browser') await Promise.race([torndown.current, delay(TEARDOWN_WAIT_MS)]);
      if (cancelled) return;
      const m = await mountPreview(
        el,
        { id: previewId, tier: s.tier, previewUrl: s.previewUrl, placement: s.preview?.placement ?? null },
        {
          ...optionsRef.current,
          files: s.files,
          router: store.client,
          signal: ac.signal,
          onStatus: (phase, detail) => setMountStatus(detail ? `${phase}: ${detail}` : phase),
        },
      );
      if (cancelled) return void (await m.unmount().catch(() => {}));
      mounted = m;
      store.attachRuntime(m.runtime, m.session);
      setShown(true);
      onMountedRef.current?.(m);
    };
    // Started on the next macrotask: StrictMode's simulated unmount + remount cancels it first.
    const timer = setTimeout(() => {
      const run = mount().catch((e: Error) => {
        if (!cancelled) store.report('preview', e.message, (e as { code?: string }).code);
      });
      torndown.current = run;
    }, 0);
    return () => {
      cancelled = true;
      clearTimeout(timer);
      ac.abort();
      setShown(false);
      const m = mounted;
      if (m) onMountedRef.current?.(undefined);
      torndown.current = torndown.current.then(() => m?.unmount().catch(() => {}));
    };
  }, [showable, previewId, store, tier]);

  // The app's uncaught errors, posted by the router's injected client from this panel's frame only.
  useEffect(() => {
    const onMessage = (e: MessageEvent) => {
      const frame = host.current?.querySelector('iframe');
      const d = e.data as Partial<RuntimeErrorMessage> | null;
      if (!frame || e.source !== frame.contentWindow || d?.type !== RUNTIME_ERROR_MESSAGE) return;
      store.reportRuntimeError({ ...d, message: String(d.message ?? 'error') });
    };
    window.addEventListener('message', onMessage);
    return () => window.removeEventListener('message', onMessage);
  }, [store]);

  return (
    <div
      className={props.className}
      data-preview="panel"
      data-state={state}
      style={{ position: 'relative', width: '100%', height: '100%', overflow: 'hidden', ...props.style }}
    >
      <div ref={host} data-preview="frame" style={{ ...fill, visibility: shown ? 'visible' : 'hidden' }} />
      {!shown &&
        (props.renderStatus ? (
          props.renderStatus(session)
        ) : (
          <StatusPage session={session} mountStatus={mountStatus} lines={props.statusLines ?? 12} />
        ))}
      {session.error &&
        (props.renderError ? (
          props.renderError(session.error, session.dismissError)
        ) : (
          <ErrorOverlay error={session.error} dismiss={session.dismissError} open={props.onOpenLocation} />
        ))}
    </div>
  );
}

function StatusPage(p: { session: PreviewSessionHandle; mountStatus: string | null; lines: number }) {
  const { state, status, tier, logs } = p.session;
  const phase = status?.phase && status.phase !== state ? ` · ${status.phase}` : '';
  return (
    <div
      data-preview="status"
      role="status"
      style={{
        ...fill,
        padding: 16,
        font: '13px system-ui, sans-serif',
        background: '#f6f7f9',
        color: '#333',
      }}
    >
      <div style={{ fontWeight: 600 }}>
        Preview {state}
        {phase}
        {tier ? ` · ${tier}` : ''}
      </div>
      {status?.message && <div>{status.message}</div>}
      {p.mountStatus && <div>{p.mountStatus}</div>}
      {logs.length > 0 && (
        <pre style={{ marginTop: 8, fontSize: 12, whiteSpace: 'pre-wrap', color: '#555' }}>
          {logs.slice(-p.lines).join('\n')}
        </pre>
      )}
    </div>
  );
}

const TITLES: Record<PreviewFault['source'], string> = {
  build: 'Build error',
  runtime: 'Runtime error',
  sync: 'Edit refused',
  preview: 'Preview error',
};

function ErrorOverlay(p: {
  error: PreviewFault;
  dismiss: () => void;
  open: ((location: FaultLocation) => void) | undefined;
}) {
  const where = faultLocation(p.error);
  const { file, line, column } = p.error;
  const open = p.open;
  return (
    <div
      data-preview="error"
      role="alert"
      style={{
        ...fill,
        padding: 16,
        background: 'rgba(24, 24, 27, 0.92)',
        color: '#fca5a5',
        font: '13px ui-monospace, monospace',
        overflow: 'auto',
      }}
    >
      <div style={{ color: '#fff', fontWeight: 600 }}>
        {TITLES[p.error.source]}
        {where && (
          <>
            {' in '}
            {open && file ? (
              <button
                type="button"
                data-preview="error-location"
                title="Open in the editor"
                onClick={() =>
                  open({ file, ...(line ? { line } : {}), ...(line && column ? { column } : {}) })
                }
                style={{
                  color: '#93c5fd',
                  background: 'none',
                  border: 0,
                  padding: 0,
                  font: 'inherit',
                  textDecoration: 'underline',
                  cursor: 'pointer',
                }}
              >
                {where}
              </button>
            ) : (
              <code data-preview="error-location" style={{ color: '#93c5fd' }}>
                {where}
              </code>
            )}
          </>
        )}
      </div>
      <pre data-preview="error-message" style={{ whiteSpace: 'pre-wrap' }}>
        {p.error.message}
      </pre>
      {p.error.detail !== p.error.message && (
        <pre style={{ whiteSpace: 'pre-wrap', color: '#a1a1aa' }}>{p.error.detail}</pre>
      )}
      <button type="button" onClick={p.dismiss}>
        Dismiss
      </button>
    </div>
  );
}
