import type { ConnectionContext, SyncSocket } from '../sync/hub.ts';

/** The part of a supabase-js `RealtimeChannel` the bridge uses. */
export interface BridgeChannelLike {
  on(
    type: 'broadcast',
    filter: { event: string },
    callback: (message: { payload?: unknown }) => void,
  ): unknown;
  subscribe(callback?: (status: string, err?: Error) => void): unknown;
  send(args: { type: 'broadcast'; event: string; payload: unknown }): Promise<string>;
}

/**
 * The part of a service-key `SupabaseClient` (or its `.realtime`) the bridge uses. `removeChannel`
 * matters: realtime-js hands back the old channel for a topic until it has been removed, so a bridge
 * that restarts on the same replica must remove the one it left.
 */
export interface BridgeRealtimeClient {
  channel(
    topic: string,
    options: { config: { broadcast: { ack: boolean; self: boolean }; private?: boolean } },
  ): BridgeChannelLike;
  removeChannel(channel: never): Promise<unknown>;
}

/** What the bridge needs of the sync hub (`createSyncHub`). */
export interface BridgeHub {
  handleSocket(socket: SyncSocket, ctx: ConnectionContext): void;
}

export interface RealtimeBridgeLogger {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
}
