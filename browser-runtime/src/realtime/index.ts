export {
  type BroadcastChannelLike,
  previewTopic,
  type RealtimeClientLike,
  type RealtimeRouterLike,
  type RealtimeTransportOptions,
  realtimeTransport,
} from './realtime-transport.ts';
