import { errorFromHttp } from '@preview/tiers';
import { createParser } from 'eventsource-parser';

/**
 * One event of a preview's SSE stream (`GET /v1/previews/:id/events`), as the router sends it.
 * `id` is the router's event id (absent on the state snapshot a stream opens with); `at` is the
 * router's clock in ms since the epoch.
 */
export type PreviewStreamEvent = { id?: string } & (
  | { type: 'state'; state: string; tier?: string | null; error?: string | null; at: number }
  | {
      type: 'status';
      phase: 'installing' | 'starting' | 'ready' | 'error' | 'suspended';
      message?: string;
      at: number;
    }
  | { type: 'log'; lines: string[]; at: number }
);

/** Options of `PreviewClient.events()`. */
export interface PreviewEventsOptions {
  /** Stops the stream: the iteration ends quietly. */
  signal?: AbortSignal;
  /** Resume after this event id (an `id` an earlier stream gave); default: the recent history first. */
  lastEventId?: string;
  /**
   * Reconnect backoff, full jitter: first delay and cap in ms.
   * @default { initialMs: 250, maxMs: 5000 }
   */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Told of every lost connection before the reconnect (`attempt` counts from 1 since the last event). */
  onReconnect?: (e: { attempt: number; reason: string }) => void;
}

/** What `previewEvents` needs from the client. */
export interface PreviewEventsSource {
  url: URL;
  token: () => Promise<string>;
  fetch: typeof fetch;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });

/** 4xx answers other than 408/429 will not change on retry: they end the iteration with their error. */
const fatal = (status: number) => status >= 400 && status < 500 && status !== 408 && status !== 429;

/**
 * The preview's SSE events as an async iterable, reconnecting after a lost connection (a router
 * replica gone, a proxy timeout, a 5xx) with `Last-Event-ID`, so no stored event is missed or
 * repeated; each reconnect first yields a fresh `state` snapshot. Ends after a `state` event
 * `ended`, when `signal` aborts, or when the consumer stops iterating.
 * @throws the typed error of a 4xx answer (UnauthorizedError, NotFoundError, ...), never for a lost
 *   connection or a 5xx (those reconnect)
 */
export async function* previewEvents(
  src: PreviewEventsSource,
  o: PreviewEventsOptions = {},
): AsyncGenerator<PreviewStreamEvent, void, undefined> {
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  const initialMs = o.backoff?.initialMs ?? 250;
  const maxMs = o.backoff?.maxMs ?? 5000;
  let last = o.lastEventId;
  let attempt = 0;
  const retry = async (reason: string) => {
    attempt++;
    o.onReconnect?.({ attempt, reason });
    await sleep(Math.random() * Math.min(maxMs, initialMs * 2 ** (attempt - 1)), signal);
  };
  try {
    while (!signal.aborted) {
      let res: Response;
      try {
        res = await src.fetch(src.url, {
          headers: {
            authorization: `Bearer ${await src.token()}`,
            accept: 'text/event-stream',
            ...(last !== undefined ? { 'last-event-id': last } : {}),
          },
          signal,
        });
      } catch (e) {
        if (signal.aborted) return;
        await retry(`connect: ${(e as Error).message}`);
        continue;
      }
      if (!res.ok || !res.body) {
        const text = await res.text().catch(() => '');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        if (fatal(res.status))
          throw errorFromHttp(res.status, json, 'router', res.headers.get('retry-after'));
        await retry(`HTTP ${res.status}`);
        continue;
      }
      const queue: PreviewStreamEvent[] = [];
      const parser = createParser({
        onEvent: (m) => {
          let data: Record<string, unknown>;
          try {
            data = JSON.parse(m.data) as Record<string, unknown>;
          } catch {
            return;
          }
          if (m.id !== undefined) last = m.id;
          queue.push({ ...data, ...(m.id !== undefined ? { id: m.id } : {}) } as PreviewStreamEvent);
        },
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let reason = 'stream ended';
      let ended = false;
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
          while (queue.length) {
            const e = queue.shift()!;
            attempt = 0;
            yield e;
            // A stored `ended` is the last event; a snapshot `ended` is followed by the stored
            // history, then the router closes the stream.
            if (e.type === 'state' && e.state === 'ended') {
              if (e.id !== undefined) return;
              ended = true;
            }
          }
        }
        if (ended) return;
      } catch (e) {
        if (signal.aborted) return;
        reason = `stream: ${(e as Error).message}`;
      } finally {
        reader.cancel().catch(() => {});
      }
      await retry(reason);
    }
  } finally {
    stop.abort();
  }
}
