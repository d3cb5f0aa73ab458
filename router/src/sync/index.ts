export {
  type ConnectionContext,
  createSyncHub,
  type SyncHub,
  type SyncHubDeps,
  type SyncLogger,
  type SyncSocket,
} from './hub.ts';
export { coalesce, createPersister, type PersistEntry } from './persister.ts';
export {
  createMemoryPubSub as createMemorySyncPubSub,
  createRedisPubSub as createRedisSyncPubSub,
  type PubSub as SyncPubSub,
} from './pubsub.ts';
export { createMemorySyncState, createRedisSyncState, type SyncState, type Watermarks } from './state.ts';
export * from './testing/index.ts';
export { createSyncUpgradeHandler } from './upgrade.ts';
export { openWebSocketChannel } from './ws-channel.ts';
