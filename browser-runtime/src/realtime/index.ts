export {
  type BroadcastChannelLike,
  previewTopic,
  type RealtimeClientLike,
  type RealtimeTransportOptions,
  realtimeTransport,
} from './realtime-transport.ts';
