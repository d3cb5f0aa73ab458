export { createBrowserTier } from './browser/index.ts';
export * from './cleanup.ts';
export * from './config.ts';
export * from './errors.ts';
export * from './limits.ts';
export * from './paths.ts';
export * from './session.ts';
export * from './types.ts';
export * from './wire.ts';
