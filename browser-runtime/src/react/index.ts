export { type ErrorLocation, parseErrorLocation } from './error-location.ts';
export {
  type FaultLocation,
  faultLocation,
  PreviewPanel,
  type PreviewPanelProps,
} from './preview-panel.tsx';
export {
  type PreviewFault,
  type PreviewFaultSource,
  type PreviewSessionOptions,
  type PreviewSessionSnapshot,
  PreviewSessionStore,
} from './session-store.ts';
export { type PreviewSessionHandle, usePreviewSession } from './use-preview-session.ts';
