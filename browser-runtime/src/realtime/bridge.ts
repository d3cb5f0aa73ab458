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

/** The router sync hub's socket interface (structurally `SyncSocket` of `@preview/router`). */
export interface BridgeSocket {
  send(text: string): void;
  close(code: number, reason: string): void;
  readonly bufferedAmount: number;
  onMessage(listener: (text: string | undefined, bytes: number) => void): void;
  onClose(listener: () => void): void;
}

/** What the bridge needs of the hub: `SyncHub.handleSocket`. */
export interface BridgeHub {
  handleSocket(socket: BridgeSocket, ctx: { previewId: string; userId: string }): void;
}

/**
 * Router-side end of the Realtime transport: joins `preview-sync:<previewId>` with a server-side
 * Supabase client, and turns every editor connection on it into a socket of the sync hub, so the hub
 * cannot tell Realtime editors from WebSocket ones. `userId` is the preview's owner: who may join the
 * channel is Realtime authorization's job (a private channel with RLS on `realtime.messages`).
 *
 * @example
 * const bridge = await bridgeRealtimeToHub({ realtime: serviceSupabase, previewId, userId, hub });
 * // ... later
 * await bridge.close();
 */
export async function bridgeRealtimeToHub(options: {
  realtime: RealtimeLike;
  previewId: string;
  userId: string;
  hub: BridgeHub;
  maxPayloadBytes?: number;
  private?: boolean;
}): Promise<{ connections(): number; close(): Promise<void> }> {
  const max = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const conns = new Map<
    string,
    { message?: (t: string, n: number) => void; close?: () => void; pending: number }
  >();
  const re = new Reassembler();
  let msgId = 0;
  const channel: ChannelLike = options.realtime.channel(topicFor(options.previewId), {
    config: { broadcast: { self: false, ack: true }, ...(options.private ? { private: true } : {}) },
  });
  const push = (payload: Chunk | Control, conn?: { pending: number }) => {
    const bytes = 'n' in payload ? payload.t.length : 0;
    if (conn) conn.pending += bytes;
    void channel
      .send({ type: 'broadcast', event: TO_CLIENT, payload })
      .catch(() => 'error')
      .then(() => {
        if (conn) conn.pending -= bytes;
      });
  };
  const drop = (c: string) => {
    const conn = conns.get(c);
    if (!conn) return;
    conns.delete(c);
    re.forget(c);
    conn.close?.();
  };
  const open = (c: string) => {
    if (conns.has(c)) return;
    const conn: { message?: (t: string, n: number) => void; close?: () => void; pending: number } = {
      pending: 0,
    };
    conns.set(c, conn);
    options.hub.handleSocket(
      {
        send(text) {
          if (conns.get(c) !== conn) return;
          for (const ch of chunkText(c, ++msgId, text, max)) push(ch, conn);
        },
        close(code, reason) {
          if (conns.get(c) !== conn) return;
          push({ c, close: code, reason });
          drop(c);
        },
        get bufferedAmount() {
          return conn.pending;
        },
        onMessage(l) {
          conn.message = l;
        },
        onClose(l) {
          conn.close = l;
        },
      },
      { previewId: options.previewId, userId: options.userId },
    );
  };
  channel.on('broadcast', { event: TO_SERVER }, ({ payload }) => {
    const ctl = payload as Control;
    if (typeof ctl?.c !== 'string') return;
    if (ctl.open) return open(ctl.c);
    if (typeof ctl.close === 'number') return drop(ctl.c);
    if (!isChunk(payload)) return;
    const conn = conns.get(payload.c);
    if (!conn) return;
    const text = re.push(payload);
    if (text !== undefined) conn.message?.(text, text.length);
  });
  await new Promise<void>((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve();
      else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT')
        reject(err ?? new Error(`realtime channel ${status.toLowerCase()}`));
    });
  });
  return {
    connections: () => conns.size,
    async close() {
      for (const c of [...conns.keys()]) {
        push({ c, close: 1001, reason: 'bridge closing' });
        drop(c);
      }
      await options.realtime.removeChannel(channel).catch(() => {});
    },
  };
}
