import {
  BroadcastEvents,
  ChunkAssembler,
  type ChunkAssemblerOptions,
  Envelope,
  encodeEnvelopes,
  type ServerFrame,
} from '@preview/tiers';
import type { ConnectionContext, SyncSocket } from '../sync/hub.ts';

/** The part of a supabase-js `RealtimeChannel` the bridge uses. */
export interface BridgeChannelLike {
  on(
    type: 'broadcast',
    filter: { event: string },
    callback: (message: { payload?: unknown }) => void,
  ): unknown;
  subscribe(callback?: (status: string, err?: Error) => void): unknown;
  send(args: { type: 'broadcast'; event: string; payload: unknown }): Promise<string>;
}

/**
 * The part of a service-key `SupabaseClient` (or its `.realtime`) the bridge uses. `removeChannel`
 * matters: realtime-js hands back the old channel for a topic until it has been removed, so a bridge
 * that restarts on the same replica must remove the one it left.
 */
export interface BridgeRealtimeClient {
  channel(
    topic: string,
    options: { config: { broadcast: { ack: boolean; self: boolean }; private?: boolean } },
  ): BridgeChannelLike;
  removeChannel(channel: never): Promise<unknown>;
}

/** What the bridge needs of the sync hub (`createSyncHub`). */
export interface BridgeHub {
  handleSocket(socket: SyncSocket, ctx: ConnectionContext): void;
}

export interface RealtimeBridgeLogger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
}

export interface RealtimeBridgeOptions {
  previewId: string;
  /** The preview's owner: editors on the channel are admitted by Realtime (RLS on private channels). */
  userId: string;
  /** Joins `preview:<previewId>` with the service key. */
  realtime: BridgeRealtimeClient;
  /**
   * Join a private channel (Realtime Authorization: the `realtime.messages` policies of
   * supabase/migrations let only the preview's owner join or broadcast); must match the editors'
   * transport. Default true.
   */
  private?: boolean;
  /**
   * Checks the editor token a hello carries (`editorToken`, minted by `POST /v1/previews/:id/realtime`
   * for this preview, its owner and the editor id `from`) before the editor becomes an editor of the
   * preview; resolves false (or throws) to refuse it with an `error {code: 'unauthorized'}` frame.
   * Unset: every channel member that says hello is admitted (only for a channel nobody else can join).
   */
  verifyEditor?: (token: string | undefined, editorId: string) => Promise<boolean>;
  /** The router's sync hub: sequencing, delivery to the sandbox, persistence and acks happen there. */
  hub: BridgeHub;
  /**
   * Whether this bridge may still act (its lease is safely held). While false, frames from editors
   * are dropped: the replica that holds the lease now relays them, or the editors replay.
   */
  fence?: () => boolean;
  /** Same as the editor's transport option (default 256 KiB); replies are chunked under it. */
  maxMessageBytes?: number;
  reassembly?: ChunkAssemblerOptions;
  /** Most editors served at once; past it the least recently heard one is told to resync. Default 64. */
  maxEditors?: number;
  log?: RealtimeBridgeLogger;
}

export interface RealtimeBridge {
  /** Resolves once the broadcast channel is joined. */
  readonly ready: Promise<void>;
  /** Editors with a live virtual socket on the hub. */
  editors(): number;
  close(): Promise<void>;
}

interface VirtualEditor {
  from: string;
  socket: SyncSocket;
  onMessage: ((text: string | undefined, bytes: number) => void) | undefined;
  onClose: (() => void) | undefined;
  /** Reply bytes queued toward this editor, not yet broadcast. */
  buffered: number;
  closed: boolean;
}

const silent: RealtimeBridgeLogger = { info() {}, warn() {} };
/** A hello is small (a seq, a client id, an editor token); anything larger is not one and is not parsed here. */
const HELLO_MAX_CHARS = 4096;
const encoder = new TextEncoder();

/** A hello frame, with the editor token it carries taken out (the hub never sees it); else undefined. */
function parseHello(text: string): { text: string; editorToken: string | undefined } | undefined {
  if (text.length > HELLO_MAX_CHARS) return undefined;
  let frame: { type?: unknown; editorToken?: unknown } | null;
  try {
    frame = JSON.parse(text) as typeof frame;
  } catch {
    return undefined;
  }
  if (frame?.type !== 'hello') return undefined;
  const { editorToken, ...hello } = frame;
  return {
    text: JSON.stringify(hello),
    editorToken: typeof editorToken === 'string' ? editorToken : undefined,
  };
}

/**
 * A transport adapter between one preview's Supabase Realtime broadcast channel (editors using
 * `realtimeTransport` from `@preview/browser-runtime`) and the router's sync hub. Each editor (the
 * envelope's `from`) becomes a virtual `SyncSocket` handed to `hub.handleSocket`, so hello, replay,
 * ordering, delivery to the sandbox, persistence and acks are the hub's, exactly as for a WebSocket
 * editor. The bridge itself only reassembles chunked envelopes, refuses envelopes that are not ones
 * (`invalid_frame`) or too large (`too_large`), chunks replies and addresses them to their editor
 * (`to`). A hello starts a new virtual socket (a reconnect) once `verifyEditor` accepted the editor
 * token it carries (else `error {code: 'unauthorized'}`); a frame from an editor without one (it
 * spoke before this bridge ran) or one the hub closed gets an `error` frame with code `resync`, on
 * which the transport reconnects and replays from its last persisted seq.
 *
 * Run exactly one per preview across replicas (`createRealtimeBridgeSet` holds a lease for it): a
 * broadcast reaches every subscriber, so two bridges would hand every frame to the hub twice.
 *
 * @example
 * const bridge = createRealtimeBridge({ previewId, userId, realtime: service, hub });
 * await bridge.ready;
 */
export function createRealtimeBridge(o: RealtimeBridgeOptions): RealtimeBridge {
  if (!o.realtime || typeof o.realtime.channel !== 'function')
    throw new TypeError('options.realtime: must be a supabase-js client (with channel())');
  if (!o.hub || typeof o.hub.handleSocket !== 'function')
    throw new TypeError('options.hub: must be a sync hub (with handleSocket())');
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(o.previewId ?? ''))
    throw new TypeError('options.previewId: 1-128 letters, digits, "_" or "-"');
  if (typeof o.userId !== 'string' || o.userId.length === 0)
    throw new TypeError('options.userId: must be a non-empty string');
  const log = o.log ?? silent;
  const fence = o.fence ?? (() => true);
  const maxMessageBytes = o.maxMessageBytes ?? 256 * 1024;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 2048)
    throw new RangeError('options.maxMessageBytes: must be an integer ≥ 2048');
  const maxEditors = o.maxEditors ?? 64;
  if (!Number.isInteger(maxEditors) || maxEditors < 1)
    throw new RangeError('options.maxEditors: must be a positive integer');
  const bridgeId = `bridge-${o.previewId}`.slice(0, 128);
  const assembler = new ChunkAssembler(o.reassembly);
  /** By `from`, least recently heard first (every frame re-inserts its editor). */
  const editors = new Map<string, VirtualEditor>();
  let closed = false;
  let msgN = 0;
  let outChain: Promise<void> = Promise.resolve();
  let inChain: Promise<void> = Promise.resolve();

  const channel = o.realtime.channel(`preview:${o.previewId}`, {
    config: { broadcast: { ack: true, self: false }, private: o.private !== false },
  });

  /** Broadcasts a frame to one editor (or all), chunked, in order. */
  function reply(to: string | undefined, frame: ServerFrame | object, ed?: VirtualEditor) {
    if (closed) return;
    const id = `b${++msgN}`;
    const size = ed ? encoder.encode(JSON.stringify(frame)).length : 0;
    if (ed) ed.buffered += size;
    outChain = outChain
      .then(async () => {
        try {
          const envs = await encodeEnvelopes(frame, {
            from: bridgeId,
            ...(to ? { to } : {}),
            id,
            maxMessageBytes,
          });
          for (const payload of envs) {
            if (closed) return;
            const res = await channel.send({ type: 'broadcast', event: BroadcastEvents.toEditor, payload });
            // A lost reply is recovered by the editor's heartbeat and replay; nothing to retry here.
            if (res !== 'ok')
              log.warn({ previewId: o.previewId, to, res }, 'realtime reply not acknowledged');
          }
        } finally {
          if (ed) ed.buffered -= size;
        }
      })
      .catch((e: unknown) => log.warn({ previewId: o.previewId, err: e }, 'realtime reply failed'));
  }

  /** Tells one editor (or, with `to` undefined, every editor) to reconnect and replay. */
  function resync(to: string | undefined, why: string) {
    reply(to, { type: 'error', code: 'resync', message: why });
  }

  /** Ends an editor's virtual socket on the hub's side (the hub forgets it; its pending batches stay replayable). */
  function drop(ed: VirtualEditor) {
    if (ed.closed) return;
    ed.closed = true;
    if (editors.get(ed.from) === ed) editors.delete(ed.from);
    ed.onClose?.();
  }

  function open(from: string): VirtualEditor {
    const ed: VirtualEditor = {
      from,
      onMessage: undefined,
      onClose: undefined,
      buffered: 0,
      closed: false,
      socket: {
        send(text) {
          if (ed.closed) return;
          let frame: object;
          try {
            frame = JSON.parse(text) as object;
          } catch {
            return;
          }
          reply(from, frame, ed);
        },
        close(code, reason) {
          if (ed.closed) return;
          // The hub let go of this editor (gap in its seqs, slow consumer, overload, shutdown): it
          // reconnects and replays, through whichever bridge runs by then.
          drop(ed);
          resync(from, `${code} ${reason}`);
        },
        get bufferedAmount() {
          return ed.buffered;
        },
        onMessage(listener) {
          ed.onMessage = listener;
        },
        onClose(listener) {
          ed.onClose = listener;
        },
      },
    };
    return ed;
  }

  async function onFrame(from: string, raw: string) {
    const hello = parseHello(raw);
    if (hello) {
      if (o.verifyEditor && !(await o.verifyEditor(hello.editorToken, from).catch(() => false))) {
        // A channel member without a token for this preview and editor id never reaches the hub.
        log.warn({ previewId: o.previewId, from }, 'realtime editor refused: no valid editor token');
        reply(from, {
          type: 'error',
          code: 'unauthorized',
          message: 'hello: editorToken is missing, expired, or not for this preview and editor',
        });
        return;
      }
      if (closed) return;
      const text = hello.text;
      // A (re)connect: the old virtual socket ends, a new one starts with this hello.
      const prev = editors.get(from);
      if (prev) drop(prev);
      while (editors.size >= maxEditors) {
        const stalest = editors.values().next().value as VirtualEditor;
        drop(stalest);
        resync(stalest.from, 'too many editors on this preview');
      }
      const ed = open(from);
      editors.set(from, ed);
      o.hub.handleSocket(ed.socket, { previewId: o.previewId, userId: o.userId });
      ed.onMessage?.(text, encoder.encode(text).length);
      return;
    }
    const text = raw;
    const ed = editors.get(from);
    if (!ed) {
      // It spoke before this bridge ran (or to a bridge that stopped): its batches may be lost.
      resync(from, 'unknown editor: send hello');
      return;
    }
    editors.delete(from);
    editors.set(from, ed);
    ed.onMessage?.(text, encoder.encode(text).length);
  }

  channel.on('broadcast', { event: BroadcastEvents.toSandbox }, (message) => {
    if (closed || !fence()) return;
    const env = Envelope.safeParse(message.payload);
    if (!env.success) {
      const from = (message.payload as { from?: unknown } | undefined)?.from;
      if (typeof from === 'string' && from.length > 0 && from.length <= 128)
        reply(from, {
          type: 'error',
          code: 'invalid_frame',
          message: env.error.issues
            .slice(0, 3)
            .map((i) => `${i.path.join('.') || '(envelope)'}: ${i.message}`)
            .join('; '),
        });
      return;
    }
    // One at a time, in arrival order: a small frame must not overtake a chunked one being hashed.
    inChain = inChain
      .then(async () => {
        const a = await assembler.accept(env.data);
        if (a.kind === 'pending' || closed) return;
        if (a.kind === 'error') {
          reply(a.from, { type: 'error', code: a.code, message: a.message });
          return;
        }
        await onFrame(a.from, a.text);
      })
      .catch((e: unknown) => log.warn({ previewId: o.previewId, err: e }, 'realtime frame handling failed'));
  });

  const sweep = setInterval(() => {
    for (const x of assembler.expire())
      reply(x.from, {
        type: 'error',
        code: 'invalid_frame',
        message: `frame ${x.id}: chunks missing (timeout)`,
      });
  }, 5000);
  sweep.unref();

  const ready = new Promise<void>((resolve, reject) => {
    let joined = false;
    channel.subscribe((status, err) => {
      if (closed) return;
      if (status === 'SUBSCRIBED') {
        if (!joined) {
          joined = true;
          log.info({ previewId: o.previewId }, 'realtime bridge joined');
          // Editors that spoke while no bridge ran (or to one that died) replay now, not at their
          // next heartbeat.
          resync(undefined, 'bridge started');
          resolve();
        } else {
          // Rejoined after a drop: editors may have sent while we were away.
          for (const ed of [...editors.values()]) {
            drop(ed);
            resync(ed.from, 'bridge rejoined');
          }
        }
        return;
      }
      if (!joined) reject(err ?? new Error(`realtime channel ${status.toLowerCase()}`));
      else log.warn({ previewId: o.previewId, status, err: err?.message }, 'realtime bridge channel');
    });
  });
  ready.catch(() => {});

  return {
    ready,
    editors: () => editors.size,
    async close() {
      if (closed) return;
      clearInterval(sweep);
      for (const ed of [...editors.values()]) drop(ed);
      await outChain;
      closed = true;
      assembler.clear();
      await o.realtime.removeChannel(channel as never).catch(() => {});
    },
  };
}
