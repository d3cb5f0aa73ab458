export * from './app-env.ts';
export * from './broadcast-chunks.ts';
export {
  type BrowserPlacement,
  type BrowserPlacementRecord,
  type BrowserPlacements,
  type BrowserTierOptions,
  createBrowserTier,
  memoryBrowserPlacements,
} from './browser/index.ts';
export * from './cleanup.ts';
export * from './config.ts';
export * from './errors.ts';
export * from './limits.ts';
export * from './origin-ledger.ts';
export * from './paths.ts';
export * from './session.ts';
export * from './types.ts';
export * from './wire.ts';
export * from './zod-error.ts';
