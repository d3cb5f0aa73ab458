import type { BuildProblem } from './build.ts';

/** Messages between BundlerRuntime (page) and its worker. */
export type WorkerRequest =
  | { type: 'init'; id: number; wasmUrl: string; previewId: string; refreshUrl?: string }
  | {
      type: 'build';
      id: number;
      /** Written into the page (see rewriteHtml). */
      buildId: number;
      /** Every file of the project (the worker compiles only what changed since its last build). */
      files: Array<[string, string | Uint8Array]>;
      vendor: Record<string, string>;
    };

export type WorkerResponse =
  | { type: 'ready'; id: number }
  | {
      type: 'built';
      id: number;
      html: string;
      /** Changed modules by project path (served at `<scope>__m/<path>`). */
      modules: Array<[string, string]>;
      /** Changed assets by served path. */
      assets: Array<[string, string | Uint8Array]>;
      update: 'reload' | 'hot' | 'none';
      /** Modules esbuild compiled for this build. */
      compiled: number;
      /** The worker's time for this build, ms. */
      ms: number;
    }
  | {
      type: 'failed';
      id: number;
      errors: string[];
      problems?: BuildProblem[];
      /** esbuild-wasm could not start: the runtime cannot run here (RuntimeUnavailableError). */
      unavailable?: boolean;
    };

/** Path prefix (on the host's origin) under which previews are served by the service worker. */
export const BUNDLER_SCOPE = '/__preview-bundler/';
export const cacheName = (previewId: string) => `preview-bundler:${previewId}`;
