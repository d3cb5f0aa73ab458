/**
 * The one client of the preview-daemon's sync socket (Node only: imported as
 * `@preview/tiers/daemon-sync`, so browser bundles of `@preview/tiers` never pull in `ws`).
 */
export { type AwaitAckOptions, batchError, sendAndAwaitAck } from './ack.ts';
export { type DaemonSyncOptions, openDaemonSync } from './channel.ts';
export { DaemonLink, type DaemonLinkOptions } from './link.ts';
