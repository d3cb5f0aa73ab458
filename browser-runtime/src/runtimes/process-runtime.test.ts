import { launchChromium, renderText } from '@preview/testkit';
import { afterAll, beforeAll } from 'vitest';
import { runRuntimeContract } from './contract.case.test.ts';
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
