/**
 * Test page script: a BundlerRuntime (offline vendor React) shown in an iframe, as an editor embeds
 * it; records the runtime's `error` and `updated` events and the frame's messages to this page.
 * Driven by `src/runtimes/bundler/hmr.chromium.int.test.ts` through `page.evaluate`.
 */
import type { ProjectFiles } from '@preview/tiers';
import { BuildFailedError, BundlerRuntime } from '../src/runtimes/bundler/bundler-runtime.ts';

let rt: BundlerRuntime | undefined;
const errors: Array<{ name: string; message: string; file?: string; line?: number; column?: number }> = [];
const updates: Array<{ build: number; kind: string; modules: string[] }> = [];
const messages: unknown[] = [];

window.addEventListener('message', (e) => {
  if (e.origin === location.origin) messages.push(e.data);
});

(window as unknown as { __page: unknown }).__page = {
  async start(files: ProjectFiles) {
    const vendor = (
      (await (await fetch('/vendor/importmap.json')).json()) as { imports: Record<string, string> }
    ).imports;
    rt = new BundlerRuntime({ previewId: `h${Date.now().toString(36)}`, vendor });
    rt.on('error', (e) =>
      errors.push(
        e instanceof BuildFailedError
          ? { name: e.name, message: e.message, file: e.file, line: e.line, column: e.column }
          : { name: e.name, message: e.message },
      ),
    );
    rt.on('updated', (u) => updates.push({ build: u.build, kind: u.kind, modules: u.modules }));
    await rt.mount(files);
    await rt.install();
    const { url } = await rt.run();
    const frame = document.createElement('iframe');
    frame.style.cssText = 'width:800px;height:600px';
    frame.src = url;
    document.querySelector('#host')?.append(frame);
  },
  async write(path: string, content: string) {
    await rt?.writeFile(path, content);
  },
  errors: () => errors,
  updates: () => updates,
  messages: () => messages,
};
