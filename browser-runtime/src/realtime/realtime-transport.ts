import {
  BroadcastEvents,
  ChunkAssembler,
  type ChunkAssemblerOptions,
  CloseCodes,
  Envelope,
  encodeEnvelopes,
  parseFrame,
  ServerFrame,
} from '@preview/tiers';
import type { SyncTransport, TransportFactory, TransportHandlers } from '../client/transport.ts';

/** The part of a supabase-js `RealtimeChannel` this transport uses (structural, so tests and bundles stay light). */
export interface BroadcastChannelLike {
  on(
    type: 'broadcast',
    filter: { event: string },
    callback: (message: { payload?: unknown; [key: string]: unknown }) => void,
  ): unknown;
  subscribe(callback?: (status: string, err?: Error) => void): unknown;
  send(args: { type: 'broadcast'; event: string; payload: unknown }): Promise<string>;
}

/** The part of a `SupabaseClient` (or `RealtimeClient`) this transport uses. */
export interface RealtimeClientLike {
  channel(
    name: string,
    options: { config: { broadcast: { ack: boolean; self: boolean }; private?: boolean } },
  ): BroadcastChannelLike;
  removeChannel(channel: never): Promise<unknown>;
}

export interface RealtimeTransportOptions {
  /** `createClient(url, anonKey, { realtime: { transport } })` or its `.realtime`. */
  client: RealtimeClientLike;
  previewId: string;
  /**
   * Largest broadcast message the Realtime project accepts, in bytes. Default 256 KiB: the hosted
   * service's Free-plan "Broadcast payload size" (https://supabase.com/docs/guides/realtime/limits;
   * Pro and up: 3,000 KB). realtime-js itself enforces no size (RealtimeChannel.ts `send` pushes
   * whatever it gets; lib/serializer.ts only caps topic/event/ref lengths at 255), so frames are cut
   * here, 1 KiB under this, before they reach the socket.
   */
  maxMessageBytes?: number;
  /** Identifies this editor on the channel; replies are addressed to it. Random by default. */
  editorId?: string;
  /**
   * Joins a private channel (Realtime Authorization: RLS on `realtime.messages` decides who may join
   * `preview:<id>`; the router's migrations admit only the preview's owner). Must match the router's
   * `SUPABASE_REALTIME_PRIVATE`. Default true. The Supabase client must carry the user's access token
   * (`createClient(url, anonKey, { accessToken })` or `realtime.setAuth`).
   */
  private?: boolean;
  /** Bounds of the buffer that reassembles chunked frames from the bridge. */
  reassembly?: ChunkAssemblerOptions;
  /**
   * The router (a `PreviewClient`): on every connect — the session's start, and every reconnect,
   * which follows a heartbeat nobody answered — the transport asks it to make sure a bridge serves
   * the preview (`POST /v1/previews/:id/realtime`) and to mint this editor's token before joining;
   * the token rides in the hello, and the bridge admits no editor without one (an `unauthorized`
   * error frame ends the session). A 401/403/404 or `preview_ended` answer ends the session
   * (`SyncClosedError`); other failures are retried at the next connect (a bridge may still run).
   */
  router?: RealtimeRouterLike;
}

/** What the transport needs of the router client (`PreviewClient` has it). */
export interface RealtimeRouterLike {
  realtime(
    previewId: string,
    options?: { signal?: AbortSignal; editorId?: string },
  ): Promise<{ topic: string; editorToken?: string }>;
}

/** Router answers that end the session instead of being retried; `undefined` → retry. */
function fatalClose(e: unknown): number | undefined {
  const { name, code } = (e ?? {}) as { name?: string; code?: string };
  if (name === 'UnauthorizedError') return CloseCodes.unauthorized;
  if (name === 'ForbiddenError') return CloseCodes.forbidden;
  if (name === 'NotFoundError') return CloseCodes.notFound;
  if (code === 'preview_ended') return CloseCodes.ended;
  return undefined;
}

/** Topic of a preview's broadcast channel (realtime-js prefixes it with `realtime:`). */
export function previewTopic(previewId: string): string {
  return `preview:${previewId}`;
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID
    ? c.randomUUID()
    : `e-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
}

/**
 * A `SyncSession` transport over a Supabase Realtime broadcast channel per preview, instead of the
 * router's WebSocket. Frames go as `c2s` broadcasts with `ack: true`: a push the service does not
 * acknowledge (`'timed out'`/`'error'`) drops the connection, and `SyncSession` reconnects and
 * replays everything not yet persisted. Frames over the size cap are chunked (see `encodeEnvelopes`).
 * A router-side bridge (`@preview/router` `createRealtimeBridge`) hands the frames to the router's sync hub; when it loses
 * track of this editor it sends an `error` frame with code `resync`, which closes the transport with
 * 4008 so that the session reconnects and replays.
 *
 * @example
 * import { createClient } from '@supabase/supabase-js';
 * const supabase = createClient(SUPABASE_URL, SUPABASE_ANON_KEY);
 * const sync = new SyncSession({ transport: realtimeTransport({ client: supabase, previewId }) });
 * sync.write('src/App.tsx', source);
 */
export function realtimeTransport(options: RealtimeTransportOptions): TransportFactory {
  const { client, previewId } = options;
  if (!client || typeof client.channel !== 'function')
    throw new TypeError('options.client: must be a supabase-js client (with channel())');
  if (typeof previewId !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(previewId))
    throw new TypeError('options.previewId: 1-128 letters, digits, "_" or "-"');
  const maxMessageBytes = options.maxMessageBytes ?? 256 * 1024;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 2048)
    throw new RangeError('options.maxMessageBytes: must be an integer ≥ 2048');
  const editorId = options.editorId ?? randomId();
  let msgN = 0;
  // realtime-js keeps one channel per topic per client: `channel()` hands back the old one until its
  // leave has finished (RealtimeClient.ts `channel`, `_remove`), so a reconnect waits for that.
  let removing: Promise<unknown> = Promise.resolve();

  return (h: TransportHandlers): SyncTransport => {
    let channel: BroadcastChannelLike | undefined;
    const assembler = new ChunkAssembler(options.reassembly);
    let closed = false;
    let opened = false;
    let buffered = 0;
    let chain: Promise<void> = Promise.resolve();
    let inbound: Promise<void> = Promise.resolve();
    const sweep = setInterval(() => assembler.expire(), 5000);
    (sweep as { unref?: () => void }).unref?.();

    const finish = (code: number, reason: string) => {
      if (closed) return;
      closed = true;
      clearInterval(sweep);
      assembler.clear();
      if (channel) {
        const ch = channel;
        removing = removing.then(() => client.removeChannel(ch as never)).catch(() => {});
      }
      h.onClose(code, reason);
    };

    const join = (ch: BroadcastChannelLike) => {
      ch.on('broadcast', { event: BroadcastEvents.toEditor }, (message) => {
        if (closed) return;
        const env = Envelope.safeParse(message.payload);
        if (!env.success || (env.data.to !== undefined && env.data.to !== editorId)) return;
        const data = env.data;
        // In arrival order: a small frame must not overtake a chunked one whose hash is being checked.
        inbound = inbound.then(async () => {
          const r = await assembler.accept(data);
          if (r.kind !== 'frame' || closed) return;
          const f = parseFrame(ServerFrame, r.text);
          if (!f.ok) return;
          if (f.value.type === 'error' && f.value.code === 'resync') {
            finish(CloseCodes.slowConsumer, f.value.message);
            return;
          }
          if (f.value.type === 'error' && f.value.code === 'unauthorized') {
            finish(CloseCodes.unauthorized, f.value.message);
            return;
          }
          h.onFrame(f.value);
        });
        // A throwing listener must not stop later frames.
        inbound = inbound.catch(() => {});
      });

      ch.subscribe((status, err) => {
        if (closed) return;
        if (status === 'SUBSCRIBED') {
          if (opened) return;
          opened = true;
          h.onOpen();
          return;
        }
        // CHANNEL_ERROR, TIMED_OUT or CLOSED: realtime-js would rejoin on its own, but the session must
        // replay what the bridge may have missed, so the connection is treated as lost.
        finish(1006, err?.message ?? `realtime channel ${status.toLowerCase()}`);
      });
    };
    let editorToken: string | undefined;
    const ensured = options.router
      ? options.router.realtime(previewId, { editorId }).then(
          (r) => {
            editorToken = r.editorToken;
            return true;
          },
          (e: unknown) => {
            const code = fatalClose(e);
            if (code === undefined) return true;
            finish(code, (e as Error).message);
            return false;
          },
        )
      : Promise.resolve(true);
    void Promise.all([removing, ensured]).then(([, ok]) => {
      if (closed || !ok) return;
      channel = client.channel(previewTopic(previewId), {
        config: { broadcast: { ack: true, self: false }, private: options.private !== false },
      });
      join(channel);
    });

    return {
      get bufferedAmount() {
        return buffered;
      },
      send(sent) {
        const ch = channel;
        if (closed || !opened || !ch) return;
        // The hello carries this connection's editor token; the bridge takes it out before the hub.
        const frame =
          (sent as { type?: unknown }).type === 'hello' && editorToken ? { ...sent, editorToken } : sent;
        const id = `${editorId.slice(0, 24)}-${++msgN}`;
        const size = JSON.stringify(frame).length;
        buffered += size;
        // One frame at a time, in order: chunks of two frames never interleave and a failed push
        // stops everything after it.
        chain = chain
          .then(async () => {
            try {
              if (closed) return;
              const envs = await encodeEnvelopes(frame, { from: editorId, id, maxMessageBytes });
              for (const payload of envs) {
                if (closed) return;
                const res = await ch.send({ type: 'broadcast', event: BroadcastEvents.toSandbox, payload });
                if (res !== 'ok') {
                  finish(1006, `realtime broadcast not acknowledged: ${res}`);
                  return;
                }
              }
            } finally {
              buffered -= size;
            }
          })
          .catch((e: unknown) => finish(1006, `realtime send failed: ${(e as Error).message}`));
      },
      close(code = 1000, reason = 'client closed') {
        finish(code, reason);
      },
    };
  };
}
