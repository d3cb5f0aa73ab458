import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { launchChromium } from '@preview/testkit';
import { expect, it } from 'vitest';

it('renders a page in headless Chromium and reads a value back from the DOM', async () => {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(
      '<!doctype html><div id="out"></div><script>document.getElementById("out").textContent = String(6 * 7)</script>',
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const chrome = await launchChromium();
  try {
    const page = await chrome.context.newPage();
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    expect(await page.locator('#out').textContent()).toBe('42');
  } finally {
    await chrome.close();
    server.close();
  }
});
