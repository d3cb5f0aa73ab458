export { BusMessage, SyncBus } from './bus.ts';
export { adaptWs, type SyncLogger, type SyncSocket } from './editor-socket.ts';
export { type ConnectionContext, createSyncHub, type SyncHub, type SyncHubDeps } from './hub.ts';
export type { Clock } from './owner-fence.ts';
export { coalesce, createPersister, type PersistEntry } from './persister.ts';
export { createMemorySyncState, createRedisSyncState, type SyncState, type Watermarks } from './state.ts';
export { createSyncUpgradeHandler } from './upgrade.ts';
export { openWebSocketChannel } from './ws-channel.ts';
