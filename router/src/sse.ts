import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { PreviewEvent } from './events.ts';
import type { PreviewService } from './previews.ts';
import type { Session } from './store/sessions.ts';

/** A following stream reads the log at least this often, woken or not (a lost pub/sub message). */
const KEEP_ALIVE_MS = 15_000;
/**
 * How many of the last sent ids a stream re-reads from: ids come from one sequence that concurrent
 * writers share, so a row can commit after a higher id was already sent; it is sent when it shows.
 */
const REREAD = 20;

/**
 * The SSE stream of one preview: a snapshot of its state (no `id:`), then stored events, each with
 * its `preview_events` id as the SSE `id:`, then live ones until the preview ends or the client
 * leaves. Without `lastEventId` the stored events are the 50 most recent; with it (the
 * `Last-Event-ID` an EventSource sends when it reconnects) they are every kept event after that id,
 * so a reconnecting client misses nothing the log still holds. Live events are read from the log
 * whenever pub/sub announces one and at every keep-alive, so a message lost while Redis was down or
 * restarting is delivered late, not lost. With `follow: false` the stream ends after the stored events.
 * @default options.follow true
 */
export function sseForPreview(
  c: Context,
  previews: PreviewService,
  s: Session,
  options: { follow?: boolean; lastEventId?: number } = {},
) {
  return streamSSE(c, async (stream) => {
    let woken = false;
    let wake: (() => void) | undefined;
    const unsubscribe = await previews.events.subscribe(s.id, () => {
      woken = true;
      wake?.();
    });
    stream.onAbort(() => {
      wake?.();
    });
    const recent: number[] = [];
    let last = options.lastEventId ?? 0;
    /** Sends the rows not sent yet; true when one of them ended the preview. */
    const send = async (rows: Array<{ id: number; event: PreviewEvent }>) => {
      let ended = false;
      for (const { id, event } of rows) {
        if (recent.includes(id) || id <= (options.lastEventId ?? 0)) continue;
        await stream.writeSSE({ id: String(id), event: event.type, data: JSON.stringify(event) });
        recent.push(id);
        if (recent.length > REREAD) recent.shift();
        last = Math.max(last, id);
        if (event.type === 'state' && event.state === 'ended') ended = true;
      }
      return ended;
    };
    try {
      await stream.writeSSE({
        event: 'state',
        data: JSON.stringify({ type: 'state', state: s.state, tier: s.tier, error: s.error, at: Date.now() }),
      });
      await send(
        options.lastEventId === undefined
          ? await previews.events.recentWithIds(s.id, 50)
          : await previews.events.after(s.id, options.lastEventId),
      );
      if (options.follow === false || s.state === 'ended') return;
      while (!stream.aborted && !stream.closed) {
        if (!woken)
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, KEEP_ALIVE_MS).unref?.();
          });
        wake = undefined;
        const announced = woken;
        woken = false;
        if (stream.aborted) break;
        const from = recent.length ? Math.min(...recent) - 1 : last;
        const rows = await previews.events.after(s.id, from);
        if (await send(rows)) return;
        if (!announced && !stream.aborted) await stream.write(': keep-alive\n\n');
      }
    } finally {
      await unsubscribe();
    }
  });
}
