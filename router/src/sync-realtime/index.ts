export {
  type BridgeChannelLike,
  createRealtimeBridge,
  type RealtimeBridge,
  type RealtimeBridgeLogger,
  type RealtimeBridgeOptions,
} from './bridge.ts';
export { createRealtimeBridgeSet, type RealtimeBridgeSet } from './bridge-set.ts';
