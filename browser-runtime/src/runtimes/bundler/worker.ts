/**
 * The bundler's Web Worker: esbuild-wasm, initialised once, and one ProjectBuilder for the preview,
 * which keeps compiled modules between builds (an edit compiles the modules it changed).
 * Built into its own script (`preview-bundler-worker.js`) by the host; see the README.
 */
import * as esbuild from 'esbuild-wasm';
import { BuildError, ProjectBuilder } from './build.ts';
import type { WorkerRequest, WorkerResponse } from './protocol.ts';

let ready: Promise<void> | undefined;
let builder: ProjectBuilder | undefined;
// The DOM and WebWorker libs cannot both be loaded in one program; declare what is used.
const scope = self as unknown as {
  onmessage: ((ev: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerResponse): void;
};

scope.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
  const msg = ev.data;
  const reply = (r: WorkerResponse) => scope.postMessage(r);
  if (msg.type === 'init') {
    ready ??= esbuild.initialize({ wasmURL: msg.wasmUrl, worker: false });
    builder ??= new ProjectBuilder(esbuild, {
      previewId: msg.previewId,
      // The compilers are split chunks, loaded on the first .vue / .svelte module.
      vue: () => import('@vue/compiler-sfc'),
      svelte: () => import('svelte/compiler'),
      ...(msg.refreshUrl ? { refreshUrl: msg.refreshUrl } : {}),
    });
    try {
      await ready;
      reply({ type: 'ready', id: msg.id });
    } catch (e) {
      ready = undefined;
      reply({ type: 'failed', id: msg.id, errors: [`esbuild-wasm did not start: ${(e as Error).message}`] });
    }
    return;
  }
  if (msg.type === 'build') {
    try {
      await ready;
      if (!builder) throw new Error('build before init');
      const out = await builder.build(new Map(msg.files), msg.vendor, msg.buildId);
      reply({ type: 'built', id: msg.id, ...out });
    } catch (e) {
      reply(
        e instanceof BuildError
          ? { type: 'failed', id: msg.id, errors: e.errors, problems: e.problems }
          : { type: 'failed', id: msg.id, errors: [String(e)] },
      );
    }
  }
};
