/**
 * Browser-safe runtimes. Node-only pieces have their own entry points:
 * `@preview/browser-runtime/process` (ProcessRuntime) and `@preview/browser-runtime/assets`
 * (builds the bundler's worker, service worker, esbuild.wasm and vendor copy for a host to serve).
 */
export * from './bundler/build.ts';
export * from './bundler/bundler-runtime.ts';
export { BUNDLER_SCOPE } from './bundler/protocol.ts';
export * from './bundler/remote-runtime.ts';
export * from './files.ts';
export * from './types.ts';
export * from './webcontainer-runtime.ts';
