import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the router's preview proxy does, in miniature: one origin per preview, every request and
 * WebSocket upgrade forwarded to the agent's upstream with the node token in `x-agent-token`.
 * Resolves with its URL (`http://127.0.0.1:<port>`) once it listens; `close()` ends every connection.
 */
export async function previewOrigin(
  upstream: string,
  token: string,
): Promise<{ url: string; close: () => Promise<void> }> {
  const up = new URL(upstream);
  const target = (path: string | undefined) => `${up.pathname}${path ?? '/'}`;
  const server: Server = createServer((req, res) => {
    const p = request(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path: target(req.url),
        headers: { ...req.headers, 'x-agent-token': token },
      },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    p.on('error', () => res.destroy());
    req.pipe(p);
  });
  server.on('upgrade', (req, socket, head) => {
    const p = request({
      host: up.hostname,
      port: up.port,
      method: req.method,
      path: target(req.url),
      headers: { ...req.headers, 'x-agent-token': token },
    });
    p.on('upgrade', (r, s, h) => {
      let head101 = `HTTP/1.1 ${r.statusCode} ${r.statusMessage}\r\n`;
      for (let i = 0; i < r.rawHeaders.length; i += 2)
        head101 += `${r.rawHeaders[i]}: ${r.rawHeaders[i + 1]}\r\n`;
      socket.write(`${head101}\r\n`);
      if (h.length) socket.write(h);
      if (head.length) s.write(head);
      s.pipe(socket).pipe(s);
      s.on('error', () => socket.destroy());
      socket.on('error', () => s.destroy());
    });
    p.on('error', () => socket.destroy());
    p.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
