/**
 * Test page script: exposes BundlerRuntime instances to the Node side of the Chromium contract test
 * (`src/runtimes/bundler/bundler-runtime.test.ts`), which drives them through `page.evaluate`.
 */
import { BundlerRuntime } from '../src/runtimes/bundler/bundler-runtime.ts';

type Emit = (previewId: string, event: string, payload: unknown) => void;
const w = window as unknown as { __emit?: Emit; __bundler: unknown };
const runtimes = new Map<string, BundlerRuntime>();

w.__bundler = {
  create(previewId: string, vendor: Record<string, string>, bootTimeoutMs?: number, workerUrl?: string) {
    const rt = new BundlerRuntime({
      previewId,
      vendor,
      ...(bootTimeoutMs ? { bootTimeoutMs } : {}),
      ...(workerUrl ? { workerUrl } : {}),
    });
    rt.on('server-ready', (e) => w.__emit?.(previewId, 'server-ready', e));
    rt.on('error', (e) => w.__emit?.(previewId, 'error', { message: e.message }));
    runtimes.set(previewId, rt);
  },
  async call(previewId: string, method: string, args: unknown[]) {
    const rt = runtimes.get(previewId) as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    try {
      return { ok: true, value: await rt[method]!.apply(rt, args) };
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string };
      return { ok: false, error: { name: err.name, code: err.code, message: err.message } };
    }
  },
};
