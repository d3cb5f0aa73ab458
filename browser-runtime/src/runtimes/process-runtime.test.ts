import { launchChromium, renderText } from '@preview/testkit';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectEveryWriteServed, runRuntimeContract } from './contract.case.test.ts';
import { ProcessRuntime } from './process-runtime.ts';

let chrome: Awaited<ReturnType<typeof launchChromium>>;
beforeAll(async () => {
  chrome = await launchChromium();
});
afterAll(async () => {
  await chrome?.close();
});

const render = (url: string, waitFor: string) => renderText(chrome.context, url, waitFor);

runRuntimeContract({
  name: 'process (Vite in a child process, rendered in Chromium)',
  create: async () => ({ runtime: new ProcessRuntime(), render }),
});

describe('ProcessRuntime', () => {
  it('a request right after writeFile gets what was written, write after write', async () => {
    const runtime = new ProcessRuntime();
    try {
      await expectEveryWriteServed(runtime);
    } finally {
      await runtime.teardown();
    }
  }, 60_000);
});
