import { parseFrame, ServerFrame } from '@preview/tiers';
import type { SyncTransport, TransportFactory } from '../client/transport.ts';
import {
  type ChannelLike,
  type Chunk,
  type Control,
  chunkText,
  DEFAULT_MAX_PAYLOAD_BYTES,
  isChunk,
  type RealtimeLike,
  Reassembler,
  TO_CLIENT,
  TO_SERVER,
  topicFor,
} from './chunks.ts';

let connections = 0;

/**
 * A sync transport over a Supabase Realtime broadcast channel (`preview-sync:<previewId>`) instead
 * of the router's WebSocket. The router side runs `bridgeRealtimeToHub` on the same channel. Frames
 * larger than the broadcast payload limit are chunked and reassembled. Use a private channel with
 * Realtime authorization (RLS on `realtime.messages`) so only the preview's owner can join.
 *
 * @example
 * const supabase = createClient(url, anonKey);
 * const sync = client.sync(previewId, { transport: realtimeTransport({ realtime: supabase, previewId }) });
 */
export function realtimeTransport(options: {
  realtime: RealtimeLike;
  previewId: string;
  maxPayloadBytes?: number;
  private?: boolean;
}): TransportFactory {
  const max = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  return (h) => {
    const c = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}.${++connections}`;
    const re = new Reassembler();
    let msgId = 0;
    let open = false;
    let closed = false;
    let pending = 0;
    const channel: ChannelLike = options.realtime.channel(topicFor(options.previewId), {
      config: { broadcast: { self: false, ack: true }, ...(options.private ? { private: true } : {}) },
    });
    const finish = (code: number, reason: string) => {
      if (closed) return;
      closed = true;
      open = false;
      h.onClose(code, reason);
      void options.realtime.removeChannel(channel).catch(() => {});
    };
    const push = (payload: Chunk | Control) => {
      const bytes = 'n' in payload ? payload.t.length : 0;
      pending += bytes;
      void channel.send({ type: 'broadcast', event: TO_SERVER, payload }).then(
        (r) => {
          pending -= bytes;
          // Refused (too large, not allowed) or timed out: the session reconnects and replays.
          if (r !== 'ok') finish(1011, `broadcast ${r}`);
        },
        () => finish(1011, 'broadcast failed'),
      );
    };
    channel.on('broadcast', { event: TO_CLIENT }, ({ payload }) => {
      if (closed) return;
      const ctl = payload as Control;
      if (ctl?.c !== c) return;
      if (typeof ctl.close === 'number') {
        finish(ctl.close, ctl.reason ?? '');
        return;
      }
      if (!isChunk(payload)) return;
      const text = re.push(payload);
      if (text === undefined) return;
      const r = parseFrame(ServerFrame, text);
      if (r.ok) h.onFrame(r.value);
    });
    channel.subscribe((status) => {
      if (status === 'SUBSCRIBED' && !open && !closed) {
        open = true;
        push({ c, open: true });
        h.onOpen();
      } else if (status === 'CLOSED' || status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') {
        finish(1006, `realtime channel ${status.toLowerCase()}`);
      }
    });
    const t: SyncTransport = {
      get bufferedAmount() {
        return pending;
      },
      send(frame) {
        if (!open) return;
        for (const ch of chunkText(c, ++msgId, JSON.stringify(frame), max)) push(ch);
      },
      close(code = 1000, reason = 'client closed') {
        if (open) push({ c, close: code, reason });
        finish(code, reason);
      },
    };
    return t;
  };
}
