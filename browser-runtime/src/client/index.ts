export { BatchRejectedError, SyncClosedError } from './errors.ts';
export {
  type CreatePreviewInput,
  PreviewClient,
  type PreviewClientOptions,
  type PreviewView,
} from './preview-client.ts';
export type { PreviewEventsOptions, PreviewStreamEvent } from './preview-events.ts';
export { type SyncEvents, SyncSession, type SyncSessionOptions, type SyncState } from './sync-session.ts';
export {
  type SyncTransport,
  type TransportFactory,
  type TransportHandlers,
  type WebSocketConstructor,
  type WebSocketLike,
  webSocketTransport,
} from './transport.ts';
