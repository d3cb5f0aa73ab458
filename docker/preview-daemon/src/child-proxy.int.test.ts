import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildDaemon, type HostDaemon, health, spawnDaemon, tempProjectDir, until } from '../test/helpers.ts';

/** A plain node:http app (nothing to install) that answers what it saw, over HTTP and a WebSocket. */
const SERVER = `import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
const seen = (req) => JSON.stringify({ host: req.headers.host, cookie: req.headers.cookie ?? null, xfh: req.headers['x-forwarded-host'] ?? null, authorization: req.headers.authorization ?? null });
const server = createServer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(seen(req)));
server.on('upgrade', (req, socket) => {
  const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  const body = Buffer.from(seen(req));
  socket.write(Buffer.concat([Buffer.from([0x81, 126, body.length >> 8, body.length & 255]), body]));
  socket.on('error', () => {});
});
server.listen(Number(process.env.PORT));
`;

describe("the daemon's child proxy: the app sees the browser's request", () => {
  let d: HostDaemon;
  beforeAll(async () => {
    buildDaemon();
    const dir = tempProjectDir();
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'app', type: 'module', main: 'server.js' }),
    );
    writeFileSync(join(dir, 'server.js'), SERVER);
    d = await spawnDaemon({ template: 'express-pg', projectDir: dir });
    await until(async () => (await health(d.port)).status === 200, 60_000, 'ready');
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
  });

  const headers = {
    host: 'fly-app.internal',
    'x-forwarded-host': 'p1.preview.example.com',
    cookie: 'sid=1; theme=dark',
    authorization: 'Bearer app',
  };
  const expected = {
    host: 'p1.preview.example.com',
    cookie: 'sid=1; theme=dark',
    xfh: 'p1.preview.example.com',
    authorization: 'Bearer app',
  };

  it('HTTP: Host from X-Forwarded-Host, cookies and Authorization as sent', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: d.port, path: '/', headers }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    expect(JSON.parse(body)).toEqual(expected);
  });

  it('WebSocket: the same', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${d.port}/socket`, { headers });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (m) => resolve(String(m)));
      ws.once('error', reject);
    });
    ws.terminate();
    expect(JSON.parse(first)).toEqual(expected);
  });
});
