import {
  CloseCodes,
  contentBytes,
  type ErrorFrame,
  type FileOp,
  InvalidInputError,
  LIMITS,
  PreviewError,
  pathProblem,
  type ServerFrame,
  type StatusEvent,
} from '@preview/tiers';
import { BatchRejectedError, SyncClosedError } from './errors.ts';
import type { SyncTransport, TransportFactory } from './transport.ts';

export type SyncState = 'connecting' | 'open' | 'closed';

/** Events of a sync session; `ms` values are measured from when the batch was sent. */
export interface SyncEvents {
  state: { state: SyncState; attempt: number };
  applied: { seq: number; ms: number };
  persisted: { seq: number; ms: number };
  /** The dev server sent its update: `ms` end to end, `sandboxMs` inside the sandbox. */
  hmr: { seq: number; ms: number; sandboxMs: number; kind: string };
  status: StatusEvent;
  rejected: { seq: number; error: BatchRejectedError };
  error: { error: PreviewError };
}

export interface SyncSessionOptions {
  transport: TransportFactory;
  /** Stable id of this editor client; replays are de-duplicated by it. Random by default. */
  clientId?: string;
  /** Gathers writes for this long before sending (0: until the current task ends). */
  coalesceMs?: number;
  /** Reconnect backoff: first delay and cap, in ms (full jitter). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Heartbeat interval; a connection silent for two of them is dropped and reconnected. Default 15000. */
  pingMs?: number;
  /** Most bytes of unpersisted edits kept for replay before writes throw. Default 64 MiB. */
  maxUnackedBytes?: number;
  /**
   * The preview runs in this tab (browser tier): applies each batch to the local runtime, in order.
   * The router has no sandbox for such a preview and acks only `persisted`; the session emits
   * `applied` when this resolves (and `error` with code `apply_failed` when it rejects).
   */
  applyLocally?: (ops: FileOp[]) => Promise<void>;
}

interface Sent {
  seq: number;
  ops: FileOp[];
  bytes: number;
  sentAt: number;
  applied: boolean;
  /** Refused (the error was reported); kept until a persisted ack passes it, and re-sent on replay so
   * that the server sees every seq in order. */
  rejected: boolean;
}

const FATAL: Record<number, string> = {
  [CloseCodes.unauthorized]: 'unauthorized',
  [CloseCodes.forbidden]: 'forbidden',
  [CloseCodes.notFound]: 'not_found',
  [CloseCodes.ended]: 'preview_ended',
};

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}

function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  return c?.randomUUID
    ? c.randomUUID()
    : `c-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * One editor's live sync with a preview: coalesced writes, ordered batches, acks, reconnect with
 * exponential backoff and jitter, and replay of everything not yet `persisted` after a reconnect.
 *
 * @example
 * const sync = client.sync(previewId);
 * sync.on('hmr', (e) => console.log(`preview updated in ${e.ms} ms`));
 * sync.write('src/App.tsx', source);
 * await sync.whenPersisted();
 */
export class SyncSession {
  readonly clientId: string;
  #o: Required<Omit<SyncSessionOptions, 'clientId' | 'backoff' | 'applyLocally'>> & {
    initialMs: number;
    maxMs: number;
  };
  readonly #applyLocally: SyncSessionOptions['applyLocally'];
  /** The local runtime applies batches one after another. */
  #localChain: Promise<void> = Promise.resolve();
  #transport: SyncTransport | undefined;
  #state: SyncState = 'connecting';
  #attempt = 0;
  #stopped = false;
  #nextSeq = 1;
  #persistedSeq = 0;
  #ops: FileOp[] = [];
  #index = new Map<string, number>();
  #scheduled = false;
  #unacked: Sent[] = [];
  #unackedBytes = 0;
  #listeners = new Map<keyof SyncEvents, Set<(e: never) => void>>();
  #idle: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ping: ReturnType<typeof setInterval> | undefined;
  #lastHeard = 0;

  constructor(options: SyncSessionOptions) {
    if (typeof options.transport !== 'function') throw new TypeError('options.transport: must be a function');
    if (options.applyLocally !== undefined && typeof options.applyLocally !== 'function')
      throw new TypeError('options.applyLocally: must be a function');
    this.clientId = options.clientId ?? randomId();
    this.#applyLocally = options.applyLocally;
    this.#o = {
      transport: options.transport,
      coalesceMs: options.coalesceMs ?? 0,
      pingMs: options.pingMs ?? 15_000,
      maxUnackedBytes: options.maxUnackedBytes ?? 64 * 1024 * 1024,
      initialMs: options.backoff?.initialMs ?? 100,
      maxMs: options.backoff?.maxMs ?? 5000,
    };
    this.#connect();
  }

  get state(): SyncState {
    return this.#state;
  }

  /** Batches sent but not yet persisted (they are replayed after a reconnect). */
  get unacked(): number {
    return this.#unacked.length + (this.#ops.length ? 1 : 0);
  }

  on<K extends keyof SyncEvents>(event: K, listener: (e: SyncEvents[K]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as (e: never) => void);
    return () => set.delete(listener as (e: never) => void);
  }

  #emit<K extends keyof SyncEvents>(event: K, e: SyncEvents[K]) {
    const set = this.#listeners.get(event);
    if (set) for (const l of set) (l as (e: SyncEvents[K]) => void)(e);
  }

  /** Writes a file (text, or bytes sent as base64). Several writes to one path before a send become one. */
  write(path: string, content: string | Uint8Array): void {
    this.#check(path, 'path');
    const op: FileOp =
      typeof content === 'string'
        ? { op: 'put', path, content, encoding: 'utf8' }
        : { op: 'put', path, content: toBase64(content), encoding: 'base64' };
    const n = contentBytes(op);
    if (n > LIMITS.fileBytes)
      throw new InvalidInputError('too_large', `content: ${n} bytes > ${LIMITS.fileBytes} (rule file_size)`);
    this.#push(op, path);
  }

  delete(path: string): void {
    this.#check(path, 'path');
    this.#push({ op: 'delete', path }, path);
  }

  /** Moves one file. Ordered with respect to every earlier write. */
  rename(from: string, to: string): void {
    this.#check(from, 'from');
    this.#check(to, 'to');
    this.#push({ op: 'rename', from, to }, undefined);
    // Later writes must not jump over the rename: coalescing restarts after it.
    this.#index.clear();
  }

  #check(path: string, field: string) {
    if (this.#stopped) throw new PreviewError('closed', 'sync session is closed');
    const p = pathProblem(path);
    if (p)
      throw new InvalidInputError(
        'invalid_path',
        `${field}: ${p.message} (rule ${p.rule}, got ${JSON.stringify(path)})`,
      );
  }

  #push(op: FileOp, path: string | undefined) {
    if (this.#unackedBytes > this.#o.maxUnackedBytes)
      throw new PreviewError(
        'backlog_full',
        `more than ${this.#o.maxUnackedBytes} bytes of edits not yet persisted`,
      );
    const at = path === undefined ? undefined : this.#index.get(path);
    if (at !== undefined) this.#ops[at] = op;
    else {
      if (path !== undefined) this.#index.set(path, this.#ops.length);
      this.#ops.push(op);
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    if (this.#o.coalesceMs > 0) setTimeout(() => this.flush(), this.#o.coalesceMs);
    else queueMicrotask(() => this.flush());
  }

  /** Sends what has been written so far now (normally automatic). */
  flush(): void {
    this.#scheduled = false;
    if (this.#ops.length === 0) return;
    const ops = this.#ops;
    this.#ops = [];
    this.#index.clear();
    // Split at the batch limits.
    let start = 0;
    while (start < ops.length) {
      let bytes = 0;
      let end = start;
      while (end < ops.length && end - start < LIMITS.batchOps) {
        const op = ops[end] as FileOp;
        const n = op.op === 'put' ? contentBytes(op) : 0;
        if (end > start && bytes + n > LIMITS.batchBytes) break;
        bytes += n;
        end++;
      }
      const sent: Sent = {
        seq: this.#nextSeq++,
        ops: ops.slice(start, end),
        bytes,
        sentAt: now(),
        applied: false,
        rejected: false,
      };
      this.#unacked.push(sent);
      this.#unackedBytes += bytes;
      this.#applyHere(sent);
      if (this.#state === 'open') this.#transport?.send({ type: 'batch', seq: sent.seq, ops: sent.ops });
      start = end;
    }
  }

  /** The local runtime applies `sent` after the batches before it; `applied` comes from it. */
  #applyHere(sent: Sent) {
    const apply = this.#applyLocally;
    if (!apply) return;
    this.#localChain = this.#localChain.then(async () => {
      try {
        await apply(sent.ops);
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        this.#emit('error', {
          error: new PreviewError('apply_failed', `batch ${sent.seq}: the local runtime failed: ${message}`),
        });
        return;
      }
      this.#markApplied(sent, now());
    });
  }

  #markApplied(s: Sent, t: number) {
    if (s.applied) return;
    s.applied = true;
    this.#emit('applied', { seq: s.seq, ms: t - s.sentAt });
  }

  /** Resolves when every write so far is acked `persisted`; rejects if the session closes for good. */
  whenPersisted(): Promise<void> {
    this.flush();
    if (this.#unacked.length === 0) return Promise.resolve();
    if (this.#stopped) return Promise.reject(new PreviewError('closed', 'sync session is closed'));
    return new Promise((resolve, reject) => this.#idle.push({ resolve, reject }));
  }

  /** Drops the connection and reconnects (as after a network failure); used by tests and on page resume. */
  reconnect(): void {
    this.#transport?.close(1000, 'reconnect');
  }

  close(): void {
    if (this.#stopped) return;
    this.flush();
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#transport?.close(1000, 'client closed');
    this.#setState('closed');
    for (const w of this.#idle.splice(0)) w.reject(new PreviewError('closed', 'sync session is closed'));
  }

  #setState(state: SyncState) {
    if (this.#state === state && state !== 'connecting') return;
    this.#state = state;
    this.#emit('state', { state, attempt: this.#attempt });
  }

  #connect() {
    if (this.#stopped) return;
    this.#setState('connecting');
    const t = this.#o.transport({
      onOpen: () => {
        if (this.#transport !== t) return;
        this.#attempt = 0;
        this.#lastHeard = now();
        t.send({ type: 'hello', lastAckedSeq: this.#persistedSeq, clientId: this.clientId });
        // Everything not yet persisted goes again, in order; the hub de-duplicates by client id and seq.
        for (const s of this.#unacked) {
          s.sentAt = now();
          t.send({ type: 'batch', seq: s.seq, ops: s.ops });
        }
        this.#setState('open');
        this.#startPing(t);
      },
      onFrame: (f) => {
        if (this.#transport !== t) return;
        this.#lastHeard = now();
        this.#onFrame(f);
      },
      onClose: (code, reason) => {
        if (this.#transport !== t) return;
        this.#transport = undefined;
        if (this.#ping) clearInterval(this.#ping);
        if (this.#stopped) return;
        const fatal = FATAL[code];
        if (fatal) {
          const error = new SyncClosedError(fatal, reason || `sync closed with ${code}`, { closeCode: code });
          this.#emit('error', { error });
          this.#stopped = true;
          this.#setState('closed');
          for (const w of this.#idle.splice(0)) w.reject(error);
          return;
        }
        this.#scheduleReconnect();
      },
    });
    this.#transport = t;
  }

  #scheduleReconnect() {
    this.#setState('connecting');
    const cap = Math.min(this.#o.maxMs, this.#o.initialMs * 2 ** this.#attempt);
    this.#attempt++;
    // Full jitter: many editors reconnecting after a router restart spread out.
    const delay = Math.random() * cap;
    this.#timer = setTimeout(() => this.#connect(), delay);
  }

  #startPing(t: SyncTransport) {
    if (this.#ping) clearInterval(this.#ping);
    this.#ping = setInterval(() => {
      if (now() - this.#lastHeard > 2 * this.#o.pingMs) t.close(4000, 'heartbeat timeout');
      else t.send({ type: 'ping', t: Date.now() });
    }, this.#o.pingMs);
    (this.#ping as { unref?: () => void }).unref?.();
  }

  #onFrame(f: ServerFrame) {
    switch (f.type) {
      case 'ack': {
        const t = now();
        if (f.stage === 'applied') {
          for (const s of this.#unacked) {
            if (s.seq > f.seq) break;
            this.#markApplied(s, t);
          }
          return;
        }
        if (f.seq > this.#persistedSeq) this.#persistedSeq = f.seq;
        let n = 0;
        while (n < this.#unacked.length && (this.#unacked[n] as Sent).seq <= f.seq) {
          const s = this.#unacked[n] as Sent;
          this.#unackedBytes -= s.bytes;
          this.#emit('persisted', { seq: s.seq, ms: t - s.sentAt });
          n++;
        }
        if (n) this.#unacked.splice(0, n);
        this.#settle();
        return;
      }
      case 'hmr': {
        const s = this.#unacked.find((x) => x.seq === f.seq);
        this.#emit('hmr', { seq: f.seq, ms: s ? now() - s.sentAt : f.ms, sandboxMs: f.ms, kind: f.kind });
        return;
      }
      case 'status':
        this.#emit('status', f);
        return;
      case 'error':
        this.#onError(f);
        return;
      default:
        return;
    }
  }

  #onError(f: ErrorFrame) {
    if (f.seq === undefined) {
      this.#emit('error', { error: new PreviewError(f.code, f.message) });
      return;
    }
    const s = this.#unacked.find((x) => x.seq === f.seq);
    // A replayed batch is refused again; report it once.
    if (s?.rejected) return;
    if (s) s.rejected = true;
    this.#emit('rejected', { seq: f.seq, error: new BatchRejectedError(f.code, f.message, { seq: f.seq }) });
  }

  #settle() {
    if (this.#unacked.length === 0 && this.#ops.length === 0)
      for (const w of this.#idle.splice(0)) w.resolve();
  }
}
