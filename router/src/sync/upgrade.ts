import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { CloseCodes, LIMITS, type PreviewError } from '@preview/tiers';
import { WebSocketServer } from 'ws';
import type { Authenticator } from '../auth/authenticate.ts';
import type { SessionStore } from '../store/sessions.ts';
import type { SyncHub } from './hub.ts';

const PATH = /^\/v1\/previews\/([0-9a-fA-F-]{36})\/sync(?:\?|$)/;
const ENDED = new Set(['ended', 'failed', 'stopping']);

/**
 * The router's upgrade handler for `GET /v1/previews/:id/sync`: authenticates the caller
 * (`Authorization: Bearer` or `?access_token=`, since browsers cannot set headers on a WebSocket),
 * checks that the caller owns the preview, then hands the socket to the hub. A refusal completes the
 * handshake and closes at once with `CloseCodes.unauthorized` / `notFound` / `ended` (a browser cannot
 * read the HTTP status of a failed handshake, but it can read a close code). Returns false for other paths.
 *
 * @example
 * router.addUpgradeHandler(createSyncUpgradeHandler({ hub, auth: router.auth, store: router.store }));
 */
export function createSyncUpgradeHandler(o: { hub: SyncHub; auth: Authenticator; store: SessionStore }) {
  // Frames over LIMITS.frameBytes are refused by ws itself with close code 1009 (CloseCodes.tooBig).
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIMITS.frameBytes,
    perMessageDeflate: false,
  });
  const refuse = (
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    close: number,
    code: string,
    message: string,
  ) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ type: 'error', code, message }));
      ws.close(close, message.slice(0, 120));
    });
  };
  const handler = (req: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
    const m = PATH.exec(req.url ?? '');
    if (!m) return false;
    const previewId = (m[1] as string).toLowerCase();
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const header = req.headers.authorization;
      const q = header ? undefined : url.searchParams.get('access_token');
      let principal: Awaited<ReturnType<Authenticator['fromToken']>> | undefined;
      try {
        principal = q ? await o.auth.fromToken(q) : await o.auth.fromHeader(header);
      } catch (e) {
        refuse(
          req,
          socket,
          head,
          CloseCodes.unauthorized,
          (e as PreviewError).code ?? 'unauthorized',
          (e as Error).message,
        );
        return;
      }
      if (principal?.kind !== 'user') {
        refuse(
          req,
          socket,
          head,
          CloseCodes.unauthorized,
          'unauthenticated',
          'missing Authorization: Bearer <token> or ?access_token=',
        );
        return;
      }
      const session = await o.store.get(previewId);
      // Another user's preview is not even acknowledged.
      if (!session || session.userId !== principal.userId) {
        refuse(req, socket, head, CloseCodes.notFound, 'not_found', `preview ${previewId} not found`);
        return;
      }
      if (ENDED.has(session.state)) {
        refuse(
          req,
          socket,
          head,
          CloseCodes.ended,
          'preview_ended',
          `preview ${previewId} is ${session.state}`,
        );
        return;
      }
      const userId = principal.userId;
      wss.handleUpgrade(req, socket, head, (ws) => o.hub.handleConnection(ws, { previewId, userId }));
    })().catch(() => {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    });
    return true;
  };
  return Object.assign(handler, {
    /** Closes every open sync socket with `goingAway` (clients reconnect); new ones are still accepted. */
    dropAll() {
      for (const c of wss.clients) c.close(CloseCodes.goingAway, 'dropped');
    },
    /** Closes every sync socket this handler accepted and stops accepting. */
    close() {
      for (const c of wss.clients) c.close(CloseCodes.goingAway, 'router shutting down');
      wss.close();
    },
  });
}
