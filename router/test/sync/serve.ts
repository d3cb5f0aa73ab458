import { createServer, type Server } from 'node:http';
import { LIMITS } from '@preview/tiers';
import { WebSocketServer } from 'ws';
import type { SyncHub } from '../../src/sync/hub.ts';

/**
 * TEST ONLY: an HTTP server whose only route is the sync upgrade `GET /v1/previews/:id/sync`, with
 * no authentication (the router's own route checks the token and ownership before calling
 * `hub.handleConnection`). Used by the hub tests, the chaos replicas and the sync bench.
 */
export async function serveSyncHub(
  hub: SyncHub,
  options: { port?: number } = {},
): Promise<{
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}> {
  const server = createServer((_req, res) => {
    res.statusCode = 404;
    res.end();
  });
  // Frames over LIMITS.frameBytes are refused by ws itself with close code 1009.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIMITS.frameBytes,
    perMessageDeflate: false,
  });
  server.on('upgrade', (req, socket, head) => {
    const m = /^\/v1\/previews\/([0-9a-f-]{36})\/sync(\?|$)/.exec(req.url ?? '');
    if (!m) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      hub.handleConnection(ws, { previewId: m[1] as string, userId: 'test' });
    });
  });
  await new Promise<void>((r) => server.listen(options.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
