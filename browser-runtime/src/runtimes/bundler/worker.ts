/**
 * The bundler's Web Worker: esbuild-wasm, initialised once, builds each project snapshot it is sent.
 * Built into its own script (`preview-bundler-worker.js`) by the host; see the README.
 */
import * as esbuild from 'esbuild-wasm';
import { BuildError, buildProject } from './build.ts';
import type { WorkerRequest, WorkerResponse } from './protocol.ts';
import type { VueSfcCompiler } from './vue.ts';

/** `@vue/compiler-sfc` (its browser build), loaded on the first project with a `.vue` file. */
let vue: Promise<VueSfcCompiler> | undefined;

let ready: Promise<void> | undefined;
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
      const hasVue = msg.files.some(([p]) => p.endsWith('.vue'));
      if (hasVue) vue ??= import('@vue/compiler-sfc');
      const out = await buildProject(esbuild, new Map(msg.files), {
        vendor: msg.vendor,
        previewId: msg.previewId,
        buildId: msg.buildId,
        ...(hasVue && vue ? { vue: await vue } : {}),
      });
      reply({ type: 'built', id: msg.id, html: out.html, js: out.js, css: out.css, assets: [...out.assets] });
    } catch (e) {
      reply({ type: 'failed', id: msg.id, errors: e instanceof BuildError ? e.errors : [String(e)] });
    }
  }
};
