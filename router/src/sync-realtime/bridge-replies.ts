import { BroadcastEvents, encodeEnvelopes, type ServerFrame } from '@preview/tiers';
import type { BridgeChannelLike, RealtimeBridgeLogger } from './bridge-types.ts';

const encoder = new TextEncoder();

/** What {@link BridgeReplies} needs. */
export interface BridgeRepliesContext {
  channel: Pick<BridgeChannelLike, 'send'>;
  /** The envelopes' `from`. */
  bridgeId: string;
  previewId: string;
  /** Largest broadcast payload; larger frames are chunked under it. */
  maxMessageBytes: number;
  log: RealtimeBridgeLogger;
  /** Once true, nothing more is sent (queued envelopes included). */
  isClosed: () => boolean;
}

/** Where the bytes of replies queued toward one editor are counted (its socket's `bufferedAmount`). */
export interface ReplyBuffer {
  buffered: number;
}

/**
 * The bridge's replies to editors: each frame is chunked into envelopes (`id` `b<n>`, addressed with
 * `to`, or to every editor without it) and broadcast on the `toEditor` event, one frame after another
 * in call order. A failed or unacknowledged broadcast is logged, not retried: the editor's heartbeat
 * and replay recover it.
 */
export class BridgeReplies {
  readonly #ctx: BridgeRepliesContext;
  #n = 0;
  #chain: Promise<void> = Promise.resolve();

  constructor(ctx: BridgeRepliesContext) {
    this.#ctx = ctx;
  }

  /**
   * Queues a frame to one editor (or all); with `buffer`, its JSON size counts in `buffer.buffered`
   * until it has been broadcast.
   */
  send(to: string | undefined, frame: ServerFrame | object, buffer?: ReplyBuffer): void {
    const { channel, bridgeId, previewId, maxMessageBytes, log, isClosed } = this.#ctx;
    if (isClosed()) return;
    const id = `b${++this.#n}`;
    const size = buffer ? encoder.encode(JSON.stringify(frame)).length : 0;
    if (buffer) buffer.buffered += size;
    this.#chain = this.#chain
      .then(async () => {
        try {
          const envs = await encodeEnvelopes(frame, {
            from: bridgeId,
            ...(to ? { to } : {}),
            id,
            maxMessageBytes,
          });
          for (const payload of envs) {
            if (isClosed()) return;
            const res = await channel.send({ type: 'broadcast', event: BroadcastEvents.toEditor, payload });
            // A lost reply is recovered by the editor's heartbeat and replay; nothing to retry here.
            if (res !== 'ok') log.warn({ previewId, to, res }, 'realtime reply not acknowledged');
          }
        } finally {
          if (buffer) buffer.buffered -= size;
        }
      })
      .catch((e: unknown) => log.warn({ previewId, err: e }, 'realtime reply failed'));
  }

  /** Tells one editor (or, with `to` undefined, every editor) to reconnect and replay. */
  resync(to: string | undefined, why: string): void {
    this.send(to, { type: 'error', code: 'resync', message: why });
  }

  /** Resolves once every reply queued so far has been sent (or has failed). */
  async drained(): Promise<void> {
    await this.#chain;
  }
}
