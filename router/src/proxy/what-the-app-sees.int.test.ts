import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { launchChromium, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { createBrowserTier } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import type { Frame, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DockerNode, startDockerNode } from '../../test/docker-node.ts';
import { bearer, createHarness, type Harness } from '../../test/harness.ts';

/** The app: `/echo` answers what it saw, `/ws` sends it as the first message, `/login` sets a cookie. */
const SERVER = `import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
const seen = (req) => ({
  url: req.url,
  host: req.headers.host ?? null,
  cookie: req.headers.cookie ?? null,
  authorization: req.headers.authorization ?? null,
  origin: req.headers.origin ?? null,
  xForwardedHost: req.headers['x-forwarded-host'] ?? null,
  xForwardedProto: req.headers['x-forwarded-proto'] ?? null,
  xForwardedFor: req.headers['x-forwarded-for'] ?? null,
  forwarded: req.headers.forwarded ?? null,
  agentToken: req.headers['x-agent-token'] ?? null,
});
const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://app').pathname;
  if (path === '/echo') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(seen(req)));
  }
  if (path === '/login') {
    res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': 'sid=s3cret; Path=/; HttpOnly; SameSite=Lax' });
    return res.end('ok');
  }
  if (path === '/go') {
    res.writeHead(302, { location: '/landed?via=relative' });
    return res.end();
  }
  if (path === '/go-absolute') {
    const proto = req.headers['x-forwarded-proto'] ?? 'http';
    res.writeHead(302, { location: proto + '://' + req.headers.host + '/landed?via=absolute' });
    return res.end();
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><html><head><title>app</title></head><body><h1 data-testid="title">app ' + path + '</h1></body></html>');
});
server.on('upgrade', (req, socket) => {
  socket.on('error', () => {});
  const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  const body = Buffer.from(JSON.stringify(seen(req)));
  socket.write(Buffer.concat([Buffer.from([0x81, 126, body.length >> 8, body.length & 255]), body]));
  socket.on('data', () => {});
});
server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '0.0.0.0');
`;
const FILES = {
  'package.json': JSON.stringify({
    name: 'what-the-app-sees',
    private: true,
    type: 'module',
    main: 'server.js',
    dependencies: { express: '^5.1.0' },
  }),
  'server.js': SERVER,
};

interface Seen {
  url: string;
  host: string | null;
  cookie: string | null;
  authorization: string | null;
  origin: string | null;
  xForwardedHost: string | null;
  xForwardedProto: string | null;
  xForwardedFor: string | null;
  forwarded: string | null;
  agentToken: string | null;
}

/** In the page (or frame): log in, then what the app saw over HTTP (with headers of the page's own) and over a WebSocket. */
async function probe(
  where: Page | Frame,
  authorization: string,
): Promise<{ http: Seen; ws: Seen; query: Seen }> {
  return await where.evaluate(async (auth) => {
    const login = await fetch('/login');
    if (!login.ok) throw new Error(`login ${login.status}`);
    const headers = { authorization: auth, 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6' };
    const http = await (await fetch('/echo', { headers })).json();
    const query = await (await fetch('/echo?token=the-apps-own')).json();
    const ws = await new Promise((resolve, reject) => {
      const s = new WebSocket(`ws://${location.host}/ws`);
      s.onmessage = (m) => {
        resolve(JSON.parse(String(m.data)));
        s.close();
      };
      s.onerror = () => reject(new Error('websocket failed'));
    });
    return { http, ws, query } as never;
  }, authorization);
}

describe(`what the app sees through the preview proxy (docker tier, ${TEST_PREVIEW_IMAGE}, Chromium)`, () => {
  let h: Harness;
  let editor: http.Server;
  let port: number;
  let node: DockerNode | undefined;
  let chrome: Awaited<ReturnType<typeof launchChromium>>;
  let preview: { id: string; host: string; link: string };

  beforeAll(async () => {
    if (
      !(await testDocker()
        .getImage(TEST_PREVIEW_IMAGE)
        .inspect()
        .catch(() => undefined))
    )
      throw new Error(`the preview image ${TEST_PREVIEW_IMAGE} is missing: run scripts/test-env.sh`);
    h = await createHarness({
      tiers: ({ nodeDirectory }) => ({
        browser: createBrowserTier(),
        docker: createDockerTier(nodeDirectory),
      }),
    });
    node = await startDockerNode(h, { name: 'sees', slots: 2, warmPool: 'express-pg=1', memoryMiB: 512 });
    port = node.port;
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: FILES, serverOnly: true }),
    });
    const p = (await res.json()) as { id: string; tier: string; previewUrl: string };
    expect(p.tier, JSON.stringify(p)).toBe('docker');
    await h.router.previews.waitReady(p.id, 120_000);
    const host = `${p.id}.preview.localhost:${port}`;
    preview = { id: p.id, host, link: `http://${host}/${new URL(p.previewUrl).search}` };
    // The editor: another site (127.0.0.1), the preview in its iframe.
    editor = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><title>editor</title><iframe id="preview" src="${preview.link}"></iframe>`);
    });
    await new Promise<void>((r) => editor.listen(0, '127.0.0.1', r));
    chrome = await launchChromium();
  }, 300_000);

  afterAll(async () => {
    await chrome?.close();
    editor?.close();
    await node?.close();
    await h?.close();
  });

  /** The rules every request follows, at the top level and in the frame alike. */
  const expectRules = (seen: { http: Seen; ws: Seen; query: Seen }) => {
    for (const s of [seen.http, seen.ws]) {
      // Host and scheme: the preview origin, as on the app's own domain.
      expect(s.host).toBe(preview.host);
      expect(s.xForwardedHost).toBe(preview.host);
      expect(s.xForwardedProto).toBe('http');
      // Client address: the browser's, as the edge saw it; a browser's own X-Forwarded-For / Forwarded is not believed.
      expect(s.xForwardedFor).toBe('127.0.0.1');
      expect(s.forwarded).toBeNull();
      // Cookies: the app's, on HTTP and on the WebSocket upgrade alike; never our access cookie.
      expect(s.cookie).toContain('sid=s3cret');
      expect(s.cookie).not.toContain('__preview_access');
      expect(s.agentToken).toBeNull();
    }
    // The WebSocket's Origin is the preview origin.
    expect(seen.ws.origin).toBe(`http://${preview.host}`);
    // The app's own Authorization passes.
    expect(seen.http.authorization).toBe('Bearer the-apps-own-token');
    // A ?token= that is not our link token is the app's.
    expect(seen.query.url).toBe('/echo?token=the-apps-own');
  };

  it('top level: Host, scheme, client address, cookies (HTTP and WebSocket), Authorization, ?token=', async () => {
    await chrome.context.clearCookies();
    const page = await chrome.context.newPage();
    await page.goto(preview.link);
    await page.waitForSelector('[data-testid="title"]');
    // The link token became our cookie and left the URL.
    expect(new URL(page.url()).search).toBe('');
    const seen = await probe(page, 'Bearer the-apps-own-token');
    expectRules(seen);
    // A cookie the page sets itself reaches the app on both paths too.
    await page.evaluate(() => {
      // biome-ignore lint/suspicious/noDocumentCookie: what an app's own page script does
      document.cookie = 'theme=dark; Path=/';
    });
    const again = await probe(page, 'Bearer the-apps-own-token');
    expect(again.http.cookie).toContain('theme=dark');
    expect(again.ws.cookie).toContain('theme=dark');
    await page.close();
  });

  it('in the editor’s cross-site iframe: the same rules, and the app’s Set-Cookie works there', async () => {
    await chrome.context.clearCookies();
    const page = await chrome.context.newPage();
    await page.goto(`http://127.0.0.1:${(editor.address() as AddressInfo).port}/`);
    const frame = await (await page.waitForSelector('#preview')).contentFrame();
    if (!frame) throw new Error('the editor has no preview frame');
    await frame.waitForSelector('[data-testid="title"]');
    expect(new URL(frame.url()).host).toBe(preview.host);
    expectRules(await probe(frame, 'Bearer the-apps-own-token'));
    await page.close();
  });

  it('our credentials are removed: an API key or preview token as Authorization', async () => {
    await chrome.context.clearCookies();
    const page = await chrome.context.newPage();
    await page.goto(preview.link);
    await page.waitForSelector('[data-testid="title"]');
    const linkToken = new URL(preview.link).searchParams.get('token')!;
    for (const ours of [`Bearer ${h.alice.apiKey}`, `Bearer ${linkToken}`])
      expect((await probe(page, ours)).http.authorization).toBeNull();
    await page.close();
  });

  it('redirects: relative and absolute (built from Host and X-Forwarded-Proto) land on the preview origin', async () => {
    await chrome.context.clearCookies();
    const page = await chrome.context.newPage();
    await page.goto(preview.link);
    await page.waitForSelector('[data-testid="title"]');
    for (const [path, via] of [
      ['/go', 'relative'],
      ['/go-absolute', 'absolute'],
    ] as const) {
      await page.goto(`http://${preview.host}${path}`);
      await page.waitForSelector('[data-testid="title"]');
      const url = new URL(page.url());
      expect(url.host).toBe(preview.host);
      expect(`${url.pathname}${url.search}`).toBe(`/landed?via=${via}`);
    }
    await page.close();
  });
});
