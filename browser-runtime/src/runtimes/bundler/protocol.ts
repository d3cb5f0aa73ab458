/** Messages between BundlerRuntime (page) and its worker. */
export type WorkerRequest =
  | { type: 'init'; id: number; wasmUrl: string }
  | {
      type: 'build';
      id: number;
      previewId: string;
      /** Written into the page (see rewriteHtml). */
      buildId: number;
      files: Array<[string, string | Uint8Array]>;
      vendor: Record<string, string>;
    };

export type WorkerResponse =
  | { type: 'ready'; id: number }
  | {
      type: 'built';
      id: number;
      html: string;
      js: string;
      css: string;
      assets: Array<[string, string | Uint8Array]>;
    }
  | { type: 'failed'; id: number; errors: string[] };

/** Path prefix (on the host's origin) under which previews are served by the service worker. */
export const BUNDLER_SCOPE = '/__preview-bundler/';
export const cacheName = (previewId: string) => `preview-bundler:${previewId}`;
