import {
  BroadcastEvents,
  ChunkAssembler,
  type ChunkAssemblerOptions,
  ClientFrame,
  Envelope,
  encodeEnvelopes,
  type FileBatch,
  parseFrame,
  type ServerFrame,
  type SyncChannel,
} from '@preview/tiers';

/** The part of a supabase-js `RealtimeChannel` the bridge uses. */
export interface BridgeChannelLike {
  on(
    type: 'broadcast',
    filter: { event: string },
    callback: (message: { payload?: unknown }) => void,
  ): unknown;
  subscribe(callback?: (status: string, err?: Error) => void): unknown;
  send(args: { type: 'broadcast'; event: string; payload: unknown }): Promise<string>;
  unsubscribe(): Promise<string>;
}

export interface RealtimeBridgeLogger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
}

export interface RealtimeBridgeOptions {
  previewId: string;
  /**
   * Joins the preview's broadcast channel with the service key, e.g.
   * `(topic) => createClient(url, serviceKey, { realtime: { transport: WebSocket } }).channel(topic,
   * { config: { broadcast: { ack: true, self: false } } })`. `topic` is `preview:<previewId>`.
   */
  joinChannel: (topic: string) => BridgeChannelLike;
  /** Opens the sandbox's edit channel (a tier's `openSync`). Reopened when it closes. */
  openChannel: (previewId: string) => Promise<SyncChannel>;
  /**
   * Makes an applied batch durable (e.g. write to `project_files`); `persisted` is acked after it
   * resolves. Without it the sandbox's file system is the only copy and `persisted` follows `applied`.
   */
  persist?: (previewId: string, batch: FileBatch) => Promise<void>;
  /** Same as the editor's transport option (default 256 KiB); replies are chunked under it. */
  maxMessageBytes?: number;
  reassembly?: ChunkAssemblerOptions;
  /**
   * First seq used toward the sandbox. The sandbox drops a seq at or below the last it applied, so a
   * restarted bridge must start above what the previous one used; the default, `Date.now() * 1000`,
   * does unless a bridge sent more than 1000 batches per millisecond of its life.
   */
  firstSandboxSeq?: number;
  /** Most editors tracked at once; past it the least recently heard one is told to resync. Default 64. */
  maxEditors?: number;
  /** Most batches per editor held while an earlier seq is missing. Default 256. */
  maxHeldBatches?: number;
  log?: RealtimeBridgeLogger;
}

export interface RealtimeBridge {
  /** Resolves once the broadcast channel is joined. */
  readonly ready: Promise<void>;
  /** Editors the bridge is tracking. */
  editors(): number;
  close(): Promise<void>;
}

interface Editor {
  /** Next seq expected from this editor; everything below it was forwarded. */
  next: number;
  /** Highest seq acked `persisted` (contiguous). */
  persisted: number;
  /** Out-of-order batches waiting for a missing seq. */
  held: Map<number, FileBatch | 'rejected'>;
  /** Forwarded, not yet persisted: editor seq → rejected? */
  open: Map<number, { rejected: boolean }>;
}

const silent: RealtimeBridgeLogger = { info() {}, warn() {} };

/**
 * Relays one preview's sync frames between a Supabase Realtime broadcast channel (editors using
 * `realtimeTransport` from `@preview/browser-runtime`) and the sandbox's `SyncChannel`. Frames are
 * reassembled and validated with the wire schemas; a bad one is answered with an `error` frame
 * (`invalid_frame`, `invalid_path`, `too_large`) and nothing is forwarded. Batches are renumbered
 * toward the sandbox (several editors share one channel) and acks, hmr and errors mapped back to the
 * editor that sent them. Replays are de-duplicated per editor; an editor the bridge has lost track of
 * (a gap in its seqs, a bridge restart, the sandbox channel closing) gets an `error` frame with code
 * `resync`, on which the transport reconnects and replays from its last persisted seq.
 *
 * @example
 * const bridge = createRealtimeBridge({
 *   previewId,
 *   joinChannel: (topic) => service.channel(topic, { config: { broadcast: { ack: true, self: false } } }),
 *   openChannel: (id) => tiers.docker.openSync(id),
 * });
 * await bridge.ready;
 */
export function createRealtimeBridge(o: RealtimeBridgeOptions): RealtimeBridge {
  if (typeof o.joinChannel !== 'function') throw new TypeError('options.joinChannel: must be a function');
  if (typeof o.openChannel !== 'function') throw new TypeError('options.openChannel: must be a function');
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(o.previewId ?? ''))
    throw new TypeError('options.previewId: 1-128 letters, digits, "_" or "-"');
  const log = o.log ?? silent;
  const maxMessageBytes = o.maxMessageBytes ?? 256 * 1024;
  const maxHeld = o.maxHeldBatches ?? 256;
  const maxEditors = o.maxEditors ?? 64;
  const bridgeId = `bridge-${o.previewId}`.slice(0, 128);
  const assembler = new ChunkAssembler(o.reassembly);
  const editors = new Map<string, Editor>();
  /** sandbox seq → who sent it */
  const inflight = new Map<number, { from: string; seq: number; batch: FileBatch }>();
  /** Applied batches, kept for the `hmr` that follows the ack (bounded, oldest dropped). */
  const applied = new Map<number, { from: string; seq: number }>();
  let sandboxSeq = o.firstSandboxSeq ?? Date.now() * 1000;
  let sandbox: SyncChannel | undefined;
  let opening: Promise<SyncChannel> | undefined;
  let closed = false;
  let msgN = 0;
  let outChain: Promise<void> = Promise.resolve();
  let inChain: Promise<void> = Promise.resolve();

  const channel = o.joinChannel(`preview:${o.previewId}`);

  /** Broadcasts a frame to one editor (or all), chunked, in order. */
  function reply(to: string | undefined, frame: ServerFrame) {
    if (closed) return;
    const id = `b${++msgN}`;
    outChain = outChain.then(async () => {
      const envs = await encodeEnvelopes(frame, {
        from: bridgeId,
        ...(to ? { to } : {}),
        id,
        maxMessageBytes,
      });
      for (const payload of envs) {
        const res = await channel.send({ type: 'broadcast', event: BroadcastEvents.toEditor, payload });
        // A lost reply is recovered by the editor's replay; nothing to retry here.
        if (res !== 'ok') log.warn({ previewId: o.previewId, to, res }, 'realtime reply not acknowledged');
      }
    });
    outChain = outChain.catch((e: unknown) => log.warn({ err: e }, 'realtime reply failed'));
  }

  function resync(from: string, why: string) {
    editors.delete(from);
    for (const [seq, w] of inflight) if (w.from === from) inflight.delete(seq);
    reply(from, { type: 'error', code: 'resync', message: why });
  }

  async function getSandbox(): Promise<SyncChannel> {
    if (sandbox?.open) return sandbox;
    if (!opening) {
      opening = o.openChannel(o.previewId).then((ch) => {
        sandbox = ch;
        ch.onFrame(onSandboxFrame);
        ch.onClose((code, reason) => {
          if (sandbox === ch) sandbox = undefined;
          log.warn({ previewId: o.previewId, code, reason }, 'sandbox sync channel closed');
          // Whatever was in flight may be lost: every editor replays.
          inflight.clear();
          for (const from of [...editors.keys()]) resync(from, 'sandbox channel closed');
        });
        return ch;
      });
      opening.then(
        () => {
          opening = undefined;
        },
        () => {
          opening = undefined;
        },
      );
    }
    return opening;
  }

  function onSandboxFrame(f: ServerFrame) {
    if (f.type === 'ack' || f.type === 'hmr' || (f.type === 'error' && f.seq !== undefined)) {
      const who: { from: string; seq: number; batch?: FileBatch } | undefined =
        inflight.get(f.seq as number) ?? (f.type === 'hmr' ? applied.get(f.seq) : undefined);
      if (!who) return;
      const ed = editors.get(who.from);
      if (f.type === 'hmr') {
        reply(who.from, { ...f, seq: who.seq });
        return;
      }
      if (f.type === 'error') {
        inflight.delete(f.seq as number);
        if (ed?.open.has(who.seq)) ed.open.set(who.seq, { rejected: true });
        reply(who.from, { ...f, seq: who.seq });
        settle(who.from);
        return;
      }
      if (f.stage !== 'applied') return;
      inflight.delete(f.seq);
      applied.set(f.seq, { from: who.from, seq: who.seq });
      if (applied.size > 1024) applied.delete(applied.keys().next().value as number);
      reply(who.from, { type: 'ack', seq: who.seq, stage: 'applied' });
      const batch = who.batch;
      if (!batch) return;
      const done = o.persist ? o.persist(o.previewId, batch) : Promise.resolve();
      done.then(
        () => {
          const e = editors.get(who.from);
          e?.open.delete(who.seq);
          settle(who.from);
        },
        (err: unknown) => {
          log.warn({ previewId: o.previewId, err }, 'persist failed');
          resync(who.from, 'persist failed');
        },
      );
      return;
    }
    // status, and errors about no particular batch, go to every editor.
    if (f.type === 'status' || f.type === 'error') reply(undefined, f);
  }

  /** Acks `persisted` up to the highest seq below which nothing is still open (rejected ones count as done). */
  function settle(from: string) {
    const ed = editors.get(from);
    if (!ed) return;
    let upTo = ed.next - 1;
    for (const [seq, s] of ed.open) if (!s.rejected && seq <= upTo) upTo = seq - 1;
    for (const [seq, s] of ed.open) if (s.rejected && seq <= upTo) ed.open.delete(seq);
    if (upTo > ed.persisted) {
      ed.persisted = upTo;
      reply(from, { type: 'ack', seq: upTo, stage: 'persisted' });
    }
  }

  async function forward(from: string, ed: Editor, batch: FileBatch) {
    const ch = await getSandbox();
    const seq = ++sandboxSeq;
    inflight.set(seq, { from, seq: batch.seq, batch });
    ed.open.set(batch.seq, { rejected: false });
    ch.send({ ...batch, seq });
  }

  async function onFrame(from: string, text: string) {
    const r = parseFrame(ClientFrame, text);
    if (!r.ok) {
      reply(from, r.error.code === 'malformed_frame' ? { ...r.error, code: 'invalid_frame' } : r.error);
      // A refused batch still takes its place in the editor's sequence.
      const ed = editors.get(from);
      const seq = r.error.seq;
      if (ed && seq !== undefined && seq >= ed.next) await accept(from, ed, seq, 'rejected');
      return;
    }
    const f = r.value;
    if (f.type === 'ping') {
      reply(from, { type: 'pong', ...(f.t !== undefined ? { t: f.t } : {}) });
      // An editor this bridge never greeted (it started after the editor joined, or restarted) may
      // hold batches nobody relayed: have it reconnect and replay.
      if (!editors.has(from)) resync(from, 'unknown editor: send hello');
      return;
    }
    if (f.type === 'pong') return;
    if (f.type === 'hello') {
      const prev = editors.get(from);
      // A reconnect: keep what is in flight (its acks still come) and re-ack what is persisted.
      if (prev && prev.persisted >= f.lastAckedSeq) {
        touch(from, prev);
        if (prev.persisted > f.lastAckedSeq)
          reply(from, { type: 'ack', seq: prev.persisted, stage: 'persisted' });
        return;
      }
      editors.delete(from);
      if (editors.size >= maxEditors) {
        // Map order is insertion order and every frame re-inserts its editor: the first is the stalest.
        resync(editors.keys().next().value as string, 'too many editors on this preview');
      }
      editors.set(from, {
        next: f.lastAckedSeq + 1,
        persisted: f.lastAckedSeq,
        held: new Map(),
        open: new Map(),
      });
      return;
    }
    const ed = editors.get(from);
    if (!ed) {
      resync(from, 'unknown editor: send hello');
      return;
    }
    touch(from, ed);
    if (f.seq < ed.next) {
      // A replay of something already forwarded: its acks come (or came) on their own.
      if (f.seq <= ed.persisted) reply(from, { type: 'ack', seq: ed.persisted, stage: 'persisted' });
      return;
    }
    await accept(from, ed, f.seq, f);
  }

  function touch(from: string, ed: Editor) {
    editors.delete(from);
    editors.set(from, ed);
  }

  /** Forwards `seq` if it is the next one expected (then whatever was held behind it), else holds it. */
  async function accept(from: string, ed: Editor, seq: number, item: FileBatch | 'rejected') {
    if (seq > ed.next) {
      if (ed.held.size >= maxHeld) {
        resync(from, `seq ${ed.next} missing`);
        return;
      }
      ed.held.set(seq, item);
      return;
    }
    let cur: FileBatch | 'rejected' | undefined = item;
    while (cur) {
      const at = ed.next;
      ed.next = at + 1;
      if (cur !== 'rejected') {
        try {
          await forward(from, ed, cur);
        } catch (e) {
          ed.open.delete(at);
          reply(from, { type: 'error', code: 'sandbox_unavailable', message: (e as Error).message, seq: at });
          resync(from, 'sandbox unavailable');
          return;
        }
      } else settle(from);
      cur = ed.held.get(ed.next);
      ed.held.delete(ed.next);
    }
  }

  channel.on('broadcast', { event: BroadcastEvents.toSandbox }, (message) => {
    if (closed) return;
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
    // Frames are handled one at a time, in arrival order.
    inChain = inChain
      .then(async () => {
        const a = await assembler.accept(env.data);
        if (a.kind === 'pending') return;
        if (a.kind === 'error') {
          reply(a.from, { type: 'error', code: a.code, message: a.message });
          return;
        }
        await onFrame(a.from, a.text);
      })
      .catch((e: unknown) => log.warn({ err: e }, 'realtime frame handling failed'));
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
      if (status === 'SUBSCRIBED') {
        if (!joined) {
          joined = true;
          log.info({ previewId: o.previewId }, 'realtime bridge joined');
          resolve();
        } else {
          // Rejoined after a drop: editors may have sent while we were away.
          for (const from of [...editors.keys()]) resync(from, 'bridge rejoined');
        }
        return;
      }
      if (!joined && status !== 'CLOSED') reject(err ?? new Error(`realtime channel ${status}`));
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
      await outChain;
      closed = true;
      assembler.clear();
      await channel.unsubscribe().catch(() => {});
      sandbox?.close();
    },
  };
}
