import WebSocket from 'ws';
import {
  InvalidInputError,
  NotFoundError,
  PreviewError,
  TierUnavailableError,
  UnauthorizedError,
} from '../errors.ts';
import type { SyncChannel } from '../types.ts';
import { type FileBatch, parseFrame, ServerFrame } from '../wire.ts';

/**
 * Opens the preview-daemon's sync socket (`/__preview/sync`, see docker/preview-daemon/PROTOCOL.md)
 * as a `SyncChannel`: sends `hello`, then batches without awaiting; acks, hmr and status frames come
 * back through `onFrame`.
 *
 * @example
 * const ch = await openDaemonSync({ url: 'wss://app.fly.dev/__preview/sync', token, headers: { 'fly-force-instance-id': id } });
 * ch.onFrame((f) => f.type === 'ack' && console.log(f.seq));
 * ch.send({ type: 'batch', seq: 1, ops: [...] });
 */
export async function openDaemonSync(o: {
  url: string;
  token: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  lastAckedSeq?: number;
  tier?: string;
}): Promise<SyncChannel> {
  o.signal?.throwIfAborted();
  const ws = new WebSocket(o.url, {
    headers: { authorization: `Bearer ${o.token}`, ...o.headers },
    perMessageDeflate: false,
    maxPayload: 32 * 1024 * 1024,
  });
  await new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      ws.terminate();
      reject(o.signal?.reason);
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => o.signal?.removeEventListener('abort', onAbort);
    ws.once('open', () => {
      done();
      resolve();
    });
    ws.once('unexpected-response', (_req, res) => {
      done();
      ws.terminate();
      const status = res.statusCode ?? 0;
      if (status === 401 || status === 403)
        reject(new UnauthorizedError(`daemon sync refused the credentials (${status})`));
      else if (status === 404) reject(new NotFoundError(`daemon sync socket not found (${o.url})`));
      else
        reject(
          new TierUnavailableError(o.tier ?? 'fly', `daemon sync answered ${status}`, {
            code: 'sync_unavailable',
          }),
        );
    });
    ws.once('error', (e) => {
      done();
      reject(
        new TierUnavailableError(o.tier ?? 'fly', `daemon sync: ${e.message}`, {
          cause: e,
          code: 'sync_unavailable',
        }),
      );
    });
  });

  const frameListeners = new Set<(f: ServerFrame) => void>();
  const closeListeners = new Set<(code: number, reason: string) => void>();
  let open = true;
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const r = parseFrame(ServerFrame, data.toString());
    if (!r.ok) return;
    if (r.value.type === 'ping') {
      ws.send(JSON.stringify({ type: 'pong', t: r.value.t }));
      return;
    }
    for (const l of frameListeners) l(r.value);
  });
  ws.on('error', () => {});
  ws.once('close', (code, reason) => {
    open = false;
    for (const l of closeListeners) l(code, reason.toString());
    closeListeners.clear();
  });
  ws.send(JSON.stringify({ type: 'hello', lastAckedSeq: o.lastAckedSeq ?? 0 }));

  return {
    get open() {
      return open && ws.readyState === WebSocket.OPEN;
    },
    send(batch: FileBatch) {
      if (!open || ws.readyState !== WebSocket.OPEN)
        throw new PreviewError('channel_closed', 'sync channel is closed');
      ws.send(JSON.stringify(batch));
    },
    onFrame(l) {
      frameListeners.add(l);
      return () => frameListeners.delete(l);
    },
    onClose(l) {
      closeListeners.add(l);
      return () => closeListeners.delete(l);
    },
    close() {
      if (!open) return;
      open = false;
      ws.close(1000, 'client closed');
    },
  };
}

/** Sends `batch` on `ch` and resolves with its ack; an error frame for the same seq rejects. */
export function sendAndAwaitAck(
  ch: SyncChannel,
  batch: FileBatch,
  o: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<ServerFrame & { type: 'ack' }> {
  return new Promise((resolve, reject) => {
    const timeoutMs = o.timeoutMs ?? 60_000;
    const finish = (fn: () => void) => {
      clearTimeout(timer);
      offFrame();
      offClose();
      o.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => finish(() => reject(o.signal?.reason));
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(new PreviewError('ack_timeout', `no ack for batch ${batch.seq} in ${timeoutMs} ms`)),
        ),
      timeoutMs,
    );
    const offFrame = ch.onFrame((f) => {
      if (f.type === 'ack' && f.seq === batch.seq && f.stage === 'applied') finish(() => resolve(f));
      else if (f.type === 'error' && f.seq === batch.seq)
        finish(() => {
          const msg = `batch ${batch.seq} rejected by the daemon: ${f.message}`;
          const bad = ['invalid_path', 'invalid_frame', 'too_large', 'malformed_frame'].includes(f.code);
          reject(bad ? new InvalidInputError(f.code, msg) : new PreviewError(f.code, msg));
        });
    });
    const offClose = ch.onClose((code) =>
      finish(() =>
        reject(new PreviewError('channel_closed', `sync channel closed (${code}) before ack ${batch.seq}`)),
      ),
    );
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      ch.send(batch);
    } catch (e) {
      finish(() => reject(e));
    }
  });
}
