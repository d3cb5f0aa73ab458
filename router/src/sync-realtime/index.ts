export {
  type BridgeChannelLike,
  createRealtimeBridge,
  type RealtimeBridge,
  type RealtimeBridgeLogger,
  type RealtimeBridgeOptions,
} from './bridge.ts';
