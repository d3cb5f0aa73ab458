export { type BridgeHub, type BridgeSocket, bridgeRealtimeToHub } from './bridge.ts';
export {
  type ChannelLike,
  chunkText,
  DEFAULT_MAX_PAYLOAD_BYTES,
  type RealtimeLike,
  Reassembler,
  topicFor,
} from './chunks.ts';
export { realtimeTransport } from './realtime-transport.ts';
