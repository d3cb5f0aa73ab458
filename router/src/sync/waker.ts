import type { SyncLogger } from './editor-socket.ts';

/** What {@link createWaker} returns: call it with a preview id; `close` stops its timers. */
export interface Waker {
  (previewId: string): void;
  /** Clears the pending trailing checks (router shutdown). */
  close(): void;
}

/**
 * A per-preview throttle in front of `wake` (the sync hub's `wake` dependency: an editor connected
 * or sent a batch). The first call for a preview runs `wake` at once; further calls within
 * `intervalMs` are folded into one trailing run when that window ends. So every edit is followed by a
 * wake check within `intervalMs` (a preview suspended between two edits still wakes), while a stream
 * of edits costs one check (one session read) per window and preview on this replica.
 *
 * @param o.wake resumes the preview when it is suspended (`PreviewService.wake`); a rejection is logged
 * @param o.intervalMs the window, in ms. @default 1000
 * @example
 * const waker = createWaker({ wake: (id) => previews.wake(id), log });
 * createSyncHub({ ..., wake: waker });
 */
export function createWaker(o: {
  wake: (previewId: string) => Promise<unknown>;
  intervalMs?: number;
  log: SyncLogger;
}): Waker {
  const intervalMs = o.intervalMs ?? 1000;
  const windows = new Map<string, { trailing: boolean; timer: NodeJS.Timeout }>();
  const run = (previewId: string) => {
    o.wake(previewId).catch((err: unknown) => o.log.warn({ previewId, err }, 'waking the preview failed'));
  };
  const call = (previewId: string): void => {
    const open = windows.get(previewId);
    if (open) {
      open.trailing = true;
      return;
    }
    run(previewId);
    const timer = setTimeout(() => {
      const w = windows.get(previewId);
      windows.delete(previewId);
      if (w?.trailing) call(previewId);
    }, intervalMs);
    timer.unref?.();
    windows.set(previewId, { trailing: false, timer });
  };
  return Object.assign(call, {
    close() {
      for (const w of windows.values()) clearTimeout(w.timer);
      windows.clear();
    },
  });
}
