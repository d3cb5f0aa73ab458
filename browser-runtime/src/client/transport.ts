import { parseFrame, ServerFrame } from '@preview/tiers';

/** What a sync session needs of a connection; a new transport is made for every (re)connect. */
export interface SyncTransport {
  /** Bytes queued and not yet sent (0 when the transport cannot tell). */
  readonly bufferedAmount: number;
  send(frame: object): void;
  close(code?: number, reason?: string): void;
}

export interface TransportHandlers {
  onOpen(): void;
  onFrame(frame: ServerFrame): void;
  /** Called once, also when opening failed. */
  onClose(code: number, reason: string): void;
}

/** Opens one connection; handlers fire asynchronously. */
export type TransportFactory = (handlers: TransportHandlers) => SyncTransport;

/** The WHATWG WebSocket constructor (browsers, Node ≥ 22, or `ws`'s `WebSocket` in Node 20). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The part of the WHATWG WebSocket the client uses (`ws` implements it too). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/**
 * A transport over a WebSocket to the router's `GET /v1/previews/:id/sync`.
 *
 * @example
 * const factory = webSocketTransport('wss://router.example/v1/previews/ID/sync?access_token=T', WebSocket);
 */
export function webSocketTransport(url: string, WS: WebSocketConstructor): TransportFactory {
  return (h) => {
    const ws = new WS(url);
    let closed = false;
    const finish = (code: number, reason: string) => {
      if (closed) return;
      closed = true;
      h.onClose(code, reason);
    };
    ws.onopen = () => h.onOpen();
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      const r = parseFrame(ServerFrame, ev.data);
      if (r.ok) h.onFrame(r.value);
    };
    ws.onclose = (ev) => finish(ev.code, ev.reason);
    // An error is followed by a close event; nothing to do here.
    ws.onerror = () => {};
    return {
      get bufferedAmount() {
        return ws.bufferedAmount;
      },
      send(frame) {
        if (ws.readyState === 1) ws.send(JSON.stringify(frame));
      },
      close(code = 1000, reason = 'client closed') {
        try {
          ws.close(code, reason);
        } catch {
          // not open yet: the close event still follows
        }
        finish(code, reason);
      },
    };
  };
}
