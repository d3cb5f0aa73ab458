/** Browser-safe runtimes. `ProcessRuntime` (Node) is at `@preview/browser-runtime/process`. */
export * from './files.ts';
export * from './types.ts';
