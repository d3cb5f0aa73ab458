import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { PreviewEvent } from './events.ts';
import type { PreviewService } from './previews.ts';
import type { Session } from './store/sessions.ts';

/**
 * The SSE stream of one preview: a snapshot, the recent events, then live ones (until the preview
 * ends or the client leaves). With `follow: false` the stream ends after the recent events.
 * @default options.follow true
 */
export function sseForPreview(
  c: Context,
  previews: PreviewService,
  s: Session,
  options: { follow?: boolean } = {},
) {
  return streamSSE(c, async (stream) => {
    const queue: PreviewEvent[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = await previews.events.subscribe(s.id, (e) => {
      queue.push(e);
      wake?.();
    });
    stream.onAbort(() => {
      wake?.();
    });
    try {
      await stream.writeSSE({
        event: 'state',
        data: JSON.stringify({ type: 'state', state: s.state, tier: s.tier, error: s.error, at: Date.now() }),
      });
      for (const e of await previews.events.recent(s.id, 50))
        await stream.writeSSE({ event: e.type, data: JSON.stringify(e) });
      if (options.follow === false) return;
      while (!stream.aborted && !stream.closed) {
        while (queue.length) {
          const e = queue.shift()!;
          await stream.writeSSE({ event: e.type, data: JSON.stringify(e) });
          if (e.type === 'state' && e.state === 'ended') return;
        }
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 15_000).unref?.();
        });
        wake = undefined;
        if (!queue.length && !stream.aborted) await stream.write(': keep-alive\n\n');
      }
    } finally {
      await unsubscribe();
    }
  });
}
