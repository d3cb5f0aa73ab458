import { BroadcastEvents, ChunkAssembler, type ChunkAssemblerOptions, Envelope } from '@preview/tiers';
import { BridgeEditors } from './bridge-editors.ts';
import { parseHello } from './bridge-hello.ts';
import { BridgeReplies } from './bridge-replies.ts';
import type {
  BridgeChannelLike,
  BridgeHub,
  BridgeRealtimeClient,
  RealtimeBridgeLogger,
} from './bridge-types.ts';

export type {
  BridgeChannelLike,
  BridgeHub,
  BridgeRealtimeClient,
  RealtimeBridgeLogger,
} from './bridge-types.ts';

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

const silent: RealtimeBridgeLogger = { info() {}, warn() {} };

/**
 * Checks the bridge's options.
 * @throws TypeError naming `options.realtime`, `options.hub`, `options.previewId` (1-128 letters,
 * digits, "_" or "-") or `options.userId`; RangeError naming `options.maxMessageBytes` (integer
 * ≥ 2048) or `options.maxEditors` (positive integer).
 */
export function checkBridgeOptions(o: RealtimeBridgeOptions): void {
  if (!o.realtime || typeof o.realtime.channel !== 'function')
    throw new TypeError('options.realtime: must be a supabase-js client (with channel())');
  if (!o.hub || typeof o.hub.handleSocket !== 'function')
    throw new TypeError('options.hub: must be a sync hub (with handleSocket())');
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(o.previewId ?? ''))
    throw new TypeError('options.previewId: 1-128 letters, digits, "_" or "-"');
  if (typeof o.userId !== 'string' || o.userId.length === 0)
    throw new TypeError('options.userId: must be a non-empty string');
  const maxMessageBytes = o.maxMessageBytes ?? 256 * 1024;
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 2048)
    throw new RangeError('options.maxMessageBytes: must be an integer ≥ 2048');
  const maxEditors = o.maxEditors ?? 64;
  if (!Number.isInteger(maxEditors) || maxEditors < 1)
    throw new RangeError('options.maxEditors: must be a positive integer');
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
  checkBridgeOptions(o);
  const log = o.log ?? silent;
  const fence = o.fence ?? (() => true);
  const assembler = new ChunkAssembler(o.reassembly);
  let closed = false;

  const channel = o.realtime.channel(`preview:${o.previewId}`, {
    config: { broadcast: { ack: true, self: false }, private: o.private !== false },
  });
  const replies = new BridgeReplies({
    channel,
    bridgeId: `bridge-${o.previewId}`.slice(0, 128),
    previewId: o.previewId,
    maxMessageBytes: o.maxMessageBytes ?? 256 * 1024,
    log,
    isClosed: () => closed,
  });
  const editors = new BridgeEditors({
    replies,
    hub: o.hub,
    previewId: o.previewId,
    userId: o.userId,
    maxEditors: o.maxEditors ?? 64,
  });

  async function onFrame(from: string, raw: string) {
    const hello = parseHello(raw);
    if (!hello) {
      // It spoke before this bridge ran (or to a bridge that stopped): its batches may be lost.
      if (!editors.deliver(from, raw)) replies.resync(from, 'unknown editor: send hello');
      return;
    }
    if (o.verifyEditor && !(await o.verifyEditor(hello.editorToken, from).catch(() => false))) {
      // A channel member without a token for this preview and editor id never reaches the hub.
      log.warn({ previewId: o.previewId, from }, 'realtime editor refused: no valid editor token');
      replies.send(from, {
        type: 'error',
        code: 'unauthorized',
        message: 'hello: editorToken is missing, expired, or not for this preview and editor',
      });
      return;
    }
    if (closed) return;
    // A (re)connect: the old virtual socket ends, a new one starts with this hello.
    editors.connect(from, hello.text);
  }

  const inbound = relayInbound({
    channel,
    assembler,
    replies,
    log,
    previewId: o.previewId,
    onFrame,
    accepting: () => !closed && fence(),
    isClosed: () => closed,
  });

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
          replies.resync(undefined, 'bridge started');
          resolve();
        } else {
          // Rejoined after a drop: editors may have sent while we were away.
          for (const ed of editors.all()) {
            editors.drop(ed);
            replies.resync(ed.from, 'bridge rejoined');
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
      inbound.stop();
      for (const ed of editors.all()) editors.drop(ed);
      await replies.drained();
      closed = true;
      assembler.clear();
      await o.realtime.removeChannel(channel as never).catch(() => {});
    },
  };
}

/** What {@link relayInbound} needs. */
interface InboundContext {
  channel: Pick<BridgeChannelLike, 'on'>;
  assembler: Pick<ChunkAssembler, 'accept' | 'expire'>;
  replies: Pick<BridgeReplies, 'send'>;
  log: RealtimeBridgeLogger;
  previewId: string;
  /** Whether frames are taken now (open, and the lease fence holds). */
  accepting: () => boolean;
  isClosed: () => boolean;
  /** A whole frame from an editor, one at a time in arrival order. */
  onFrame: (from: string, text: string) => Promise<void>;
}

/**
 * Listens for editors' envelopes: refuses one that is not an envelope (`invalid_frame`, to its `from`
 * when it has a usable one), reassembles chunked frames one at a time in arrival order and hands whole
 * ones to `onFrame`; every 5 s, frames whose chunks stopped coming are refused as `invalid_frame`.
 * `stop()` ends the sweep.
 */
function relayInbound(ctx: InboundContext): { stop(): void } {
  const { assembler, replies, log } = ctx;
  let inChain: Promise<void> = Promise.resolve();
  ctx.channel.on('broadcast', { event: BroadcastEvents.toSandbox }, (message) => {
    if (!ctx.accepting()) return;
    const env = Envelope.safeParse(message.payload);
    if (!env.success) {
      const from = (message.payload as { from?: unknown } | undefined)?.from;
      if (typeof from === 'string' && from.length > 0 && from.length <= 128)
        replies.send(from, {
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
        if (a.kind === 'pending' || ctx.isClosed()) return;
        if (a.kind === 'error') {
          replies.send(a.from, { type: 'error', code: a.code, message: a.message });
          return;
        }
        await ctx.onFrame(a.from, a.text);
      })
      .catch((e: unknown) =>
        log.warn({ previewId: ctx.previewId, err: e }, 'realtime frame handling failed'),
      );
  });

  const sweep = setInterval(() => {
    for (const x of assembler.expire())
      replies.send(x.from, {
        type: 'error',
        code: 'invalid_frame',
        message: `frame ${x.id}: chunks missing (timeout)`,
      });
  }, 5000);
  sweep.unref();
  return { stop: () => clearInterval(sweep) };
}
