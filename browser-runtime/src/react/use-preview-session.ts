import { useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import {
  type PreviewSessionOptions,
  type PreviewSessionSnapshot,
  PreviewSessionStore,
} from './session-store.ts';

/** What `usePreviewSession` returns: the session's React state plus the editor's actions. */
export interface PreviewSessionHandle extends PreviewSessionSnapshot {
  /** Writes a file through the sync socket (coalesced per path within `coalesceMs`). */
  write(path: string, content: string): void;
  /** Deletes a file through the sync socket. */
  remove(path: string): void;
  /** Renames a file through the sync socket (`PreviewSessionStore.rename`). */
  rename(from: string, to: string): void;
  /** Clears the current error (the overlay's dismiss button). */
  dismissError(): void;
  /** The store behind the hook (`PreviewPanel` uses it; `store.client` is the `PreviewClient`). */
  store: PreviewSessionStore;
}

/**
 * A live preview for a React editor: created when the component mounts (with `projectId` when
 * given), stopped when it unmounts (not on a re-render, and not by React StrictMode's simulated
 * unmount + remount), with the router's state, status and logs (SSE) as React state and `write`
 * sending edits through the sync socket. Options are read once, on mount; later edits go through
 * `write` and `remove`. Render it with `<PreviewPanel session={...} />`.
 *
 * @throws ConfigError (on first render) when neither `client` nor `routerUrl` + `token` are given
 * @example
 * const session = usePreviewSession({ files, template: 'vite-react', routerUrl, token });
 * session.write('src/App.jsx', source);
 * return <PreviewPanel session={session} />;
 */
export function usePreviewSession(options: PreviewSessionOptions): PreviewSessionHandle {
  const [store] = useState(() => new PreviewSessionStore(options));
  useEffect(() => {
    store.retain();
    return () => store.release();
  }, [store]);
  const snap = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  return useMemo(
    () => ({
      ...snap,
      write: store.write,
      remove: store.remove,
      rename: store.rename,
      dismissError: () => store.dismissError(),
      store,
    }),
    [snap, store],
  );
}
