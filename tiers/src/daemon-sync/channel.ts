import WebSocket from 'ws';
import { NotFoundError, PreviewError, TierUnavailableError, UnauthorizedError } from '../errors.ts';
import { LIMITS } from '../limits.ts';
import type { SyncChannel } from '../types.ts';
import { type FileBatch, parseFrame, ServerFrame } from '../wire.ts';

/** Where and how to open a daemon's sync socket. */
export interface DaemonSyncOptions {
  /** `ws(s)://…/__preview/sync` of a daemon, or of an agent relaying to one (`/v1/previews/:id/sync`). */
  url: string;
  /** Bearer token (the daemon's, or the agent's node credential); none for an open test endpoint. */
  token?: string | undefined;
  /** Extra handshake headers (Fly: `fly-force-instance-id`). */
  headers?: Record<string, string> | undefined;
  signal?: AbortSignal | undefined;
  /** Gives up opening after this long, with `TierUnavailableError` code `timeout`. @default 10000 */
  timeoutMs?: number | undefined;
  /** The `lastAckedSeq` of the `hello` frame sent on open. @default 0 */
  lastAckedSeq?: number | undefined;
  /** Names the tier in the errors raised. @default 'docker' */
  tier?: string | undefined;
}

/**
 * Opens a preview-daemon's sync socket (`/__preview/sync`, see docker/preview-daemon/PROTOCOL.md) as
 * a `SyncChannel`: sends `hello`, then batches without awaiting; acks, hmr, status and error frames
 * come back through `onFrame` (each parsed with the wire schema; a frame that does not parse is
 * dropped). `ping` frames are answered with `pong` here. The one client of that socket: the docker
 * tier (through the agent's relay), the fly tier and the pool agent all use it.
 *
 * @throws UnauthorizedError when the socket refuses the token (401/403), NotFoundError (404),
 *   TierUnavailableError (`sync_unavailable`: another answer or a network error; `timeout`).
 * @example
 * const ch = await openDaemonSync({ url: 'wss://app.fly.dev/__preview/sync', token, headers: { 'fly-force-instance-id': id } });
 * ch.onFrame((f) => f.type === 'ack' && console.log(f.seq));
 * ch.send({ type: 'batch', seq: 1, ops: [...] });
 */
export async function openDaemonSync(o: DaemonSyncOptions): Promise<SyncChannel> {
  o.signal?.throwIfAborted();
  const tier = o.tier ?? 'docker';
  const ws = new WebSocket(o.url, {
    headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...o.headers },
    perMessageDeflate: false,
    maxPayload: LIMITS.frameBytes,
  });
  await new Promise<void>((resolve, reject) => {
    const fail = (e: unknown) => {
      done();
      ws.terminate();
      reject(e);
    };
    const onAbort = () => fail(o.signal?.reason);
    const timer = setTimeout(
      () =>
        fail(
          new TierUnavailableError(
            'timeout',
            `daemon sync ${o.url}: no answer in ${o.timeoutMs ?? 10_000} ms`,
            { tier },
          ),
        ),
      o.timeoutMs ?? 10_000,
    );
    o.signal?.addEventListener('abort', onAbort, { once: true });
    function done() {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
    }
    ws.once('open', () => {
      done();
      resolve();
    });
    ws.once('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      if (status === 401 || status === 403)
        fail(new UnauthorizedError('unauthorized', `daemon sync refused the credentials (${status})`));
      else if (status === 404)
        fail(new NotFoundError('not_found', `daemon sync socket not found (${o.url})`));
      else fail(new TierUnavailableError('sync_unavailable', `daemon sync answered ${status}`, { tier }));
    });
    ws.once('error', (e) =>
      fail(new TierUnavailableError('sync_unavailable', `daemon sync: ${e.message}`, { tier, cause: e })),
    );
  });
  return new WebSocketChannel(ws, o.lastAckedSeq ?? 0);
}

/** A `SyncChannel` over one open WebSocket. */
class WebSocketChannel implements SyncChannel {
  readonly #ws: WebSocket;
  readonly #frameListeners = new Set<(f: ServerFrame) => void>();
  readonly #closeListeners = new Set<(code: number, reason: string) => void>();
  #open = true;

  constructor(ws: WebSocket, lastAckedSeq: number) {
    this.#ws = ws;
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const r = parseFrame(ServerFrame, data.toString());
      if (!r.ok) return;
      if (r.value.type === 'ping') {
        ws.send(JSON.stringify({ type: 'pong', t: r.value.t }));
        return;
      }
      for (const l of this.#frameListeners) l(r.value);
    });
    ws.on('error', () => {});
    ws.once('close', (code, reason) => {
      this.#open = false;
      for (const l of this.#closeListeners) l(code, reason.toString());
      this.#closeListeners.clear();
    });
    ws.send(JSON.stringify({ type: 'hello', lastAckedSeq }));
  }

  get open(): boolean {
    return this.#open && this.#ws.readyState === WebSocket.OPEN;
  }

  send(batch: FileBatch): void {
    if (!this.open) throw new PreviewError('channel_closed', 'sync channel is closed');
    this.#ws.send(JSON.stringify(batch));
  }

  onFrame(l: (f: ServerFrame) => void): () => void {
    this.#frameListeners.add(l);
    return () => this.#frameListeners.delete(l);
  }

  onClose(l: (code: number, reason: string) => void): () => void {
    this.#closeListeners.add(l);
    return () => this.#closeListeners.delete(l);
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#ws.close(1000, 'client closed');
  }
}
