import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { launchChromium } from '@preview/testkit';
import { describe, expect, it } from 'vitest';

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

describe('a frame whose module script was lost on the way (launchChromium reloadOn)', () => {
  /** A page whose module script sets #out; how many times the script was asked for. */
  async function appServer() {
    let scripts = 0;
    const server = createServer((req, res) => {
      if (req.url === '/app.js') {
        scripts++;
        res.writeHead(200, { 'content-type': 'text/javascript' });
        return res.end('document.getElementById("out").textContent = "ran";');
      }
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><p id="out">blank</p><script type="module" src="/app.js"></script>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
      server,
      scripts: () => scripts,
    };
  }

  // Chromium's ERR_NETWORK_CHANGED cannot be made on purpose through CDP: a failure it can make stands
  // in for it here (the list of failures is the option under test).
  it.each([
    [
      'a listed failure: the frame is loaded again and the app runs',
      ['net::ERR_INTERNET_DISCONNECTED'],
      'ran',
    ],
    ['any other failure: the page stays as it was (what a test looks for)', [], 'blank'],
  ])('%s', async (_, reloadOn, shown) => {
    const app = await appServer();
    const chrome = await launchChromium({ reloadOn });
    try {
      const page = await chrome.context.newPage();
      let lost = 0;
      await page.route('**/app.js', (route) =>
        lost++ === 0 ? route.abort('internetdisconnected') : route.fallback(),
      );
      await page.goto(app.url);
      if (shown === 'ran') await page.locator('#out', { hasText: 'ran' }).waitFor();
      else await page.waitForLoadState('load');
      expect(await page.locator('#out').textContent()).toBe(shown);
      expect([lost, app.scripts()]).toEqual(shown === 'ran' ? [2, 1] : [1, 0]);
    } finally {
      await chrome.close();
      app.server.close();
    }
  });
});
