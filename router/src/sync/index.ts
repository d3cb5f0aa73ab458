export {
  type ConnectionContext,
  createSyncHub,
  type SyncHub,
  type SyncHubDeps,
  type SyncLogger,
  type SyncSocket,
} from './hub.ts';
export { coalesce, createPersister, type PersistEntry } from './persister.ts';
export { createMemoryPubSub, createRedisPubSub, type PubSub } from './pubsub.ts';
export { createMemorySyncState, createRedisSyncState, type SyncState, type Watermarks } from './state.ts';
export * from './testing/index.ts';
export { openWebSocketChannel } from './ws-channel.ts';
