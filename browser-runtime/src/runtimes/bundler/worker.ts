/**
 * The bundler's Web Worker: one ProjectBuilder for the preview, which keeps compiled modules between
 * builds (an edit compiles the modules it changed) and in Cache Storage (`preview-bundler-compiled`:
 * a reload or another preview of the same files compiles nothing). esbuild-wasm starts with the
 * first build that has something to compile, or 1.5 s after a first build that had nothing to
 * compile (not competing with the page's first render); a JIT warm-up compile follows, so the first
 * edit does not pay for it.
 * Built into its own script (`preview-bundler-worker.js`) by the host; see the README.
 */
import * as esbuild from 'esbuild-wasm';
import { BuildError, type CompiledStore, ProjectBuilder } from './build.ts';
import type { WorkerRequest, WorkerResponse } from './protocol.ts';

/** The Cache Storage cache compiled modules are kept in (shared by the origin's previews). */
export const COMPILED_CACHE = 'preview-bundler-compiled';

let ready: Promise<void> | undefined;
let wasmUrl = '';
/** How long after a first build with nothing to compile esbuild-wasm starts anyway, ms. */
const WARM_UP_DELAY_MS = 1500;
let builder: ProjectBuilder | undefined;
// The DOM and WebWorker libs cannot both be loaded in one program; declare what is used.
const scope = self as unknown as {
  onmessage: ((ev: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerResponse): void;
};

/** At most this many compiled modules are kept; past it the oldest go (checked every 100 puts). */
export const COMPILED_MAX = 4000;
let puts = 0;

/** Compiled modules in Cache Storage, under made-up URLs of their keys. */
const store: CompiledStore | undefined =
  typeof caches === 'undefined'
    ? undefined
    : {
        async get(key) {
          const hit = await (await caches.open(COMPILED_CACHE)).match(`https://compiled.invalid/${key}`);
          return hit ? ((await hit.json()) as { code: string; deps: string[] }) : undefined;
        },
        async put(key, value) {
          const cache = await caches.open(COMPILED_CACHE);
          await cache.put(
            `https://compiled.invalid/${key}`,
            new Response(JSON.stringify(value), { headers: { 'content-type': 'application/json' } }),
          );
          if (++puts % 100 !== 0) return;
          // keys() lists entries in insertion order: the oldest first.
          const keys = await cache.keys();
          await Promise.all(
            keys.slice(0, Math.max(0, keys.length - COMPILED_MAX)).map((k) => cache.delete(k)),
          );
        },
      };

/** esbuild-wasm, started once; rejects with `unavailable` set when it cannot start. */
function started(wasmUrl: string): Promise<void> {
  ready ??= esbuild.initialize({ wasmURL: wasmUrl, worker: false }).then(
    () => {
      void esbuild
        .transform('export const A = () => <b>{1 as number}</b>;', { loader: 'tsx' })
        .catch(() => {});
    },
    (e: unknown) => {
      throw Object.assign(new Error(`esbuild-wasm did not start: ${(e as Error).message}`), {
        unavailable: true,
      });
    },
  );
  return ready;
}

scope.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
  const msg = ev.data;
  const reply = (r: WorkerResponse) => scope.postMessage(r);
  if (msg.type === 'init') {
    wasmUrl = msg.wasmUrl;
    builder ??= new ProjectBuilder(() => started(msg.wasmUrl).then(() => esbuild), {
      previewId: msg.previewId,
      // The compilers are split chunks, loaded on the first .vue / .svelte module.
      vue: () => import('@vue/compiler-sfc'),
      svelte: () => import('svelte/compiler'),
      ...(msg.refreshUrl ? { refreshUrl: msg.refreshUrl } : {}),
      ...(store ? { store } : {}),
    });
    reply({ type: 'ready', id: msg.id });
    return;
  }
  if (msg.type === 'build') {
    try {
      if (!builder) throw new Error('build before init');
      const t0 = performance.now();
      const out = await builder.build(new Map(msg.files), msg.vendor, msg.buildId);
      reply({ type: 'built', id: msg.id, ...out, ms: performance.now() - t0 });
      // After a first build that found everything in the store, ready for the first edit; a while
      // later, so compiling 14 MB of wasm does not compete with the page's first render.
      if (!ready) setTimeout(() => started(wasmUrl).catch(() => {}), WARM_UP_DELAY_MS);
    } catch (e) {
      reply(
        e instanceof BuildError
          ? { type: 'failed', id: msg.id, errors: e.errors, problems: e.problems }
          : {
              type: 'failed',
              id: msg.id,
              errors: [(e as Error).message ?? String(e)],
              ...((e as { unavailable?: boolean }).unavailable ? { unavailable: true } : {}),
            },
      );
    }
  }
};
