export {
  type BridgeChannelLike,
  type BridgeHub,
  type BridgeRealtimeClient,
  createRealtimeBridge,
  type RealtimeBridge,
  type RealtimeBridgeLogger,
  type RealtimeBridgeOptions,
} from './bridge.ts';
export {
  type BridgePlace,
  createRealtimeBridgeSet,
  type RealtimeBridgeSet,
  type RealtimeBridgeSetOptions,
} from './bridge-set.ts';
