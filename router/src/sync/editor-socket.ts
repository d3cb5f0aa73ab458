import { randomUUID } from 'node:crypto';
import {
  ClientFrame,
  CloseCodes,
  type ErrorFrame,
  type FileOp,
  LIMITS,
  parseFrame,
  type ServerFrame,
} from '@preview/tiers';
import type { WebSocket } from 'ws';
import { HTTP_CLIENT } from './client-order.ts';

/** What the hub needs of a logger (pino satisfies it). */
export interface SyncLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/**
 * A message-oriented socket toward one editor. `ws` sockets are adapted by `adaptWs`; other
 * transports (the Supabase Realtime bridge) implement it directly.
 */
export interface SyncSocket {
  send(text: string): void;
  close(code: number, reason: string): void;
  /** Bytes queued but not yet written to the network. */
  readonly bufferedAmount: number;
  onMessage(listener: (text: string | undefined, bytes: number) => void): void;
  onClose(listener: () => void): void;
}

/**
 * An editor batch on its way to the owner: the client's own `seq` and its ops.
 * `ops: null`: refused at the edge (the editor got the error); it still takes its place in the
 * client's order, so acks stay exact and cumulative.
 */
export interface Forwarded {
  seq: number;
  ops: FileOp[] | null;
}

export interface EditorLimits {
  /** Close with `slowConsumer` when more than this many bytes are unsent. */
  maxBufferedBytes: number;
  /** Close with `overloaded` when more than this many batches are forwarded but not persisted. */
  maxPendingBatches: number;
}

/** Frames that may arrive before the hello is answered; more closes the socket. */
const MAX_EARLY_FRAMES = 10_000;

/**
 * One editor socket on this replica: the hello, frame parsing and per-socket ordering, the batches
 * forwarded and not yet persisted (re-forwarded when the owner changes), and back-pressure.
 *
 * @example
 * const ed = new EditorConnection(socket, { maxBufferedBytes: 8 << 20, maxPendingBatches: 4096 });
 * const fw = ed.receive(text, bytes); // a batch to forward, or undefined
 */
export class EditorConnection {
  readonly id = randomUUID();
  clientId = `anon-${randomUUID()}`;
  /** Highest client seq received on this socket. */
  lastSeq = 0;
  /** The hello was answered; frames before that wait in `early`. */
  ready = false;
  closed = false;
  /** Forwarded to the owner, not yet persisted, in order. */
  readonly pending: Forwarded[] = [];
  readonly #early: Array<{ text: string | undefined; bytes: number }> = [];
  readonly #socket: SyncSocket;
  readonly #limits: EditorLimits;

  constructor(socket: SyncSocket, limits: EditorLimits) {
    this.#socket = socket;
    this.#limits = limits;
  }

  send(f: ServerFrame | ErrorFrame): void {
    if (this.closed) return;
    if (this.#socket.bufferedAmount > this.#limits.maxBufferedBytes) {
      this.close(CloseCodes.slowConsumer, 'slow consumer: reconnect and replay');
      return;
    }
    if (f.type === 'ack' && f.stage === 'persisted') this.#dropPersisted(f.seq);
    this.#socket.send(JSON.stringify(f));
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#socket.close(code, reason);
    } catch {
      // already closed
    }
  }

  /**
   * Reads the first frame: a hello sets the client id and returns the last seq the client saw
   * acked; anything else is kept to be read after the hello (as from an anonymous client).
   */
  hello(text: string | undefined): number {
    if (text === undefined) return 0;
    const r = parseFrame(ClientFrame, text);
    if (r.ok && r.value.type === 'hello') {
      // The HTTP client's id is not an editor's to take (its seqs follow other rules).
      if (r.value.clientId && r.value.clientId !== HTTP_CLIENT) this.clientId = r.value.clientId;
      return r.value.lastAckedSeq;
    }
    this.#early.unshift({ text, bytes: text.length });
    return 0;
  }

  /** The hello is answered: replays the frames that came early; returns their batches in order. */
  open(): Forwarded[] {
    this.ready = true;
    this.lastSeq = 0;
    const out: Forwarded[] = [];
    for (const x of this.#early.splice(0)) {
      const fw = this.receive(x.text, x.bytes);
      if (fw) out.push(fw);
    }
    return out;
  }

  /**
   * One frame from the editor. Answers what it can itself (errors, pong) and returns a batch to
   * forward to the owner (already added to `pending`), or `undefined`.
   */
  receive(text: string | undefined, bytes: number): Forwarded | undefined {
    if (this.closed) return undefined;
    if (text === undefined) {
      this.send({
        type: 'error',
        code: 'invalid_frame',
        message: 'binary frames are not accepted; send JSON text',
      });
      return undefined;
    }
    if (bytes > LIMITS.frameBytes) {
      this.close(CloseCodes.tooBig, `frame over ${LIMITS.frameBytes} bytes`);
      return undefined;
    }
    if (!this.ready) {
      this.#early.push({ text, bytes });
      if (this.#early.length > MAX_EARLY_FRAMES)
        this.close(CloseCodes.overloaded, 'too many frames before hello completed');
      return undefined;
    }
    const r = parseFrame(ClientFrame, text);
    if (!r.ok) return this.#refused(r.error, text);
    const f = r.value;
    switch (f.type) {
      case 'ping':
        this.send({ type: 'pong', ...(f.t === undefined ? {} : { t: f.t }) });
        return undefined;
      case 'pong':
        return undefined;
      case 'hello':
        this.send({
          type: 'error',
          code: 'invalid_frame',
          message: 'hello: only allowed as the first frame',
        });
        return undefined;
      case 'batch':
        return this.#batch(f.seq, f.ops);
    }
  }

  #batch(seq: number, ops: FileOp[]): Forwarded | undefined {
    if (seq <= this.lastSeq) {
      this.send({
        type: 'error',
        code: 'seq_out_of_order',
        seq,
        message: `seq: must increase on a connection (got ${seq} after ${this.lastSeq})`,
      });
      return undefined;
    }
    this.lastSeq = seq;
    if (this.pending.length >= this.#limits.maxPendingBatches) {
      this.close(CloseCodes.overloaded, 'too many batches not yet persisted: reconnect and replay');
      return undefined;
    }
    const fw: Forwarded = { seq, ops };
    this.pending.push(fw);
    return fw;
  }

  #refused(error: ErrorFrame, text: string): Forwarded | undefined {
    this.send(error);
    const seq = error.seq;
    if (seq === undefined || seq <= this.lastSeq || !text.includes('"batch"')) return undefined;
    // A refused batch keeps its place in the client's order (acks are cumulative).
    this.lastSeq = seq;
    const fw: Forwarded = { seq, ops: null };
    this.pending.push(fw);
    return fw;
  }

  /** Persisted acks are cumulative for a client: everything up to `seq` is done. */
  #dropPersisted(seq: number): void {
    let n = 0;
    while (n < this.pending.length && (this.pending[n] as Forwarded).seq <= seq) n++;
    if (n) this.pending.splice(0, n);
  }
}

/** Adapts a `ws` server-side socket to `SyncSocket`. */
export function adaptWs(ws: WebSocket): SyncSocket {
  return {
    send: (t) => ws.send(t),
    close: (code, reason) => ws.close(code, reason),
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    onMessage: (l) =>
      ws.on('message', (data, isBinary) => {
        const bytes = Array.isArray(data)
          ? data.reduce((n, b) => n + b.length, 0)
          : (data as Buffer | ArrayBuffer).byteLength;
        l(isBinary ? undefined : data.toString(), bytes);
      }),
    onClose: (l) => {
      // ws reports protocol violations (e.g. a frame over maxPayload) as 'error' and then closes
      // with the matching code (1009); the close is what we act on.
      ws.on('error', () => {});
      ws.on('close', () => l());
    },
  };
}
