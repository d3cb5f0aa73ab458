import {
  type FileBatch,
  parseFrame,
  ServerFrame,
  type SyncChannel,
  TierUnavailableError,
} from '@preview/tiers';
import { WebSocket } from 'ws';

/**
 * A `SyncChannel` over one WebSocket to a sandbox's sync endpoint (the preview-daemon's
 * `/__preview/sync`, or an agent relaying to it). Resolves once the socket is open.
 *
 * @example
 * const ch = await openWebSocketChannel({ url: 'ws://10.0.0.5:3000/__preview/sync', token });
 * ch.onFrame((f) => console.log(f)); ch.send({ type: 'batch', seq: 1, ops: [...] });
 */
export function openWebSocketChannel(options: {
  url: string;
  token?: string;
  signal?: AbortSignal;
  /** Gives up opening after this long. Default 5000. */
  timeoutMs?: number;
}): Promise<SyncChannel> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(options.url, {
      headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
      perMessageDeflate: false,
    });
    const frameListeners = new Set<(f: ServerFrame) => void>();
    const closeListeners = new Set<(code: number, reason: string) => void>();
    let open = false;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(
        new TierUnavailableError('timeout', `sync channel to ${options.url}: no answer in time`, {
          tier: 'docker',
        }),
      );
    }, options.timeoutMs ?? 5000);
    const onAbort = () => ws.terminate();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    ws.on('error', (e) => {
      if (!open) {
        clearTimeout(timer);
        reject(
          new TierUnavailableError('tier_unavailable', `sync channel to ${options.url}: ${e.message}`, {
            tier: 'docker',
            cause: e,
          }),
        );
      }
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const r = parseFrame(ServerFrame, data.toString());
      if (!r.ok) return;
      for (const l of frameListeners) l(r.value);
    });
    ws.on('close', (code, reason) => {
      const wasOpen = open;
      open = false;
      options.signal?.removeEventListener('abort', onAbort);
      if (wasOpen) for (const l of closeListeners) l(code, reason.toString());
      closeListeners.clear();
    });
    ws.on('open', () => {
      clearTimeout(timer);
      open = true;
      resolve({
        send(batch: FileBatch) {
          if (!open)
            throw new TierUnavailableError('channel_closed', 'sync channel is closed', { tier: 'docker' });
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
        get open() {
          return open;
        },
        close() {
          ws.close(1000, 'done');
        },
      });
    });
  });
}
