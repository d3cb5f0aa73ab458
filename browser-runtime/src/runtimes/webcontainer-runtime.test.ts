import { fileURLToPath } from 'node:url';
import { launchChromium, renderText } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeWebContainer } from '../../test/fake-webcontainer.ts';
import { expectEveryWriteServed, runRuntimeContract, VANILLA_PROJECT } from './contract.case.test.ts';
import { isRuntimeUnavailable, RuntimeUnavailableError } from './types.ts';
import { toFileSystemTree, WebContainerRuntime } from './webcontainer-runtime.ts';

let chrome: Awaited<ReturnType<typeof launchChromium>>;
beforeAll(async () => {
  chrome = await launchChromium();
});
afterAll(async () => {
  await chrome?.close();
});

/** The fake's `npm install` links the repository's installed packages, as a WebContainer would install them. */
const bootFake = FakeWebContainer.booter({
  nodeModules: fileURLToPath(new URL('../../../node_modules', import.meta.url)),
});

const render = (url: string, waitFor: string) => renderText(chrome.context, url, waitFor);

runRuntimeContract({
  name: 'webcontainer (fake of @webcontainer/api, checked against its typings)',
  create: async () => ({ runtime: new WebContainerRuntime({ boot: bootFake }), render }),
});

describe('WebContainerRuntime', () => {
  it("the fake's dev server, like a WebContainer's, never misses a write: a request right after each gets it", async () => {
    const runtime = new WebContainerRuntime({ boot: bootFake });
    try {
      await expectEveryWriteServed(runtime);
    } finally {
      await runtime.teardown();
    }
  }, 60_000);

  it('boot that never finishes (StackBlitz iframe unreachable) fails with RuntimeUnavailable after the timeout', async () => {
    const rt = new WebContainerRuntime({ boot: () => new Promise(() => {}), bootTimeoutMs: 300 });
    const err = await rt.mount(VANILLA_PROJECT).catch((e) => e);
    expect(err).toBeInstanceOf(RuntimeUnavailableError);
    expect(isRuntimeUnavailable(err)).toBe(true);
    expect(err).toMatchObject({ code: 'runtime_unavailable', tier: 'browser', runtime: 'webcontainer' });
    expect(err.message).toMatch(/did not boot within 300 ms/);
    await rt.teardown();
  });

  it('boot that throws is RuntimeUnavailable too, and the real package cannot boot in Node', async () => {
    const rt = new WebContainerRuntime({
      boot: async () => {
        throw new Error('SharedArrayBuffer is not defined (not cross-origin isolated)');
      },
    });
    await expect(rt.install()).rejects.toThrow(/cannot boot here: SharedArrayBuffer/);
    // The default boot uses @webcontainer/api itself.
    const real = new WebContainerRuntime({ bootTimeoutMs: 5_000 });
    await expect(real.mount(VANILLA_PROJECT)).rejects.toBeInstanceOf(RuntimeUnavailableError);
  });

  it('converts flat files to a FileSystemTree', () => {
    const tree = toFileSystemTree(
      new Map<string, string | Uint8Array>([
        ['index.html', '<p>'],
        ['src/a.js', 'a'],
        ['src/lib/b.js', 'b'],
      ]),
    );
    expect(tree).toEqual({
      'index.html': { file: { contents: '<p>' } },
      src: {
        directory: {
          'a.js': { file: { contents: 'a' } },
          lib: { directory: { 'b.js': { file: { contents: 'b' } } } },
        },
      },
    });
  });

  it('drives the WebContainer API: mount, npm install, npm run dev, writes, preview errors, teardown', async () => {
    let wc: FakeWebContainer | undefined;
    const rt = new WebContainerRuntime({
      boot: async () => {
        wc = await bootFake();
        return wc;
      },
    });
    try {
      const errors: Error[] = [];
      rt.on('error', (e) => errors.push(e));
      await rt.mount(VANILLA_PROJECT);
      await rt.install();
      const ready = await rt.run();
      expect(ready.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      await rt.writeFile('src/deep/x.js', 'export {}');
      wc!.emitPreviewError('ReferenceError: foo is not defined');
      expect(errors.map((e) => e.message)).toEqual(['ReferenceError: foo is not defined']);
      await rt.teardown();
      await rt.teardown();
      expect(wc!.calls.filter((c) => !c.startsWith('on '))).toEqual([
        'mount',
        'spawn npm install',
        'spawn npm run dev',
        'fs.mkdir src/deep -p',
        'fs.writeFile src/deep/x.js',
        'teardown',
      ]);
      expect(wc!.calls).toEqual(
        expect.arrayContaining(['on error', 'on server-ready', 'on preview-message']),
      );
    } finally {
      await rt.teardown();
    }
  });

  it('a failing npm install rejects with its output', async () => {
    const rt = new WebContainerRuntime({ boot: bootFake });
    try {
      await rt.mount({ 'index.html': '<p>no package.json</p>' });
      await expect(rt.install()).rejects.toThrow(/npm install exited with 254.*package.json/s);
    } finally {
      await rt.teardown();
    }
  });
});
