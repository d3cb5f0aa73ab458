import { createServer, type Server } from 'node:http';
import { type WebSocket, WebSocketServer } from 'ws';

/**
 * FAKE of Supabase's hosted Realtime (a vendor service we cannot run here), for tests only. It speaks
 * the Phoenix-channels WebSocket protocol the way `@supabase/realtime-js` 2.108 uses it, checked
 * against that package's sources in node_modules:
 * - URL `/realtime/v1/websocket?apikey=…&vsn=…` (RealtimeClient.endpointURL; supabase-js appends
 *   `/realtime/v1` to the project URL).
 * - vsn 1.0.0: every frame is a JSON object `{topic, event, payload, ref, join_ref}` (RealtimeClient.js,
 *   the `VSN_1_0_0` encode/decode). vsn 2.0.0: JSON arrays `[join_ref, ref, topic, event, payload]`
 *   (lib/serializer.js `encode`/`decode`), except a client's broadcast push, which is binary:
 *   kind 3 (`userBroadcastPush`), then u8 lengths of join_ref, ref, topic, user event, metadata, a u8
 *   payload encoding (0 binary, 1 JSON), the strings, then the payload (`_encodeUserBroadcastPush`).
 * - `phx_join` with `payload.config.broadcast.{self, ack}` → `phx_reply {status:'ok', response:
 *   {postgres_changes: []}}` (RealtimeChannel.js reads `postgres_changes` from the join reply).
 * - `heartbeat` on topic `phoenix` → `phx_reply {status:'ok', response:{}}`.
 * - `broadcast` → relayed to the topic's other members as `broadcast {type:'broadcast', event,
 *   payload}` (and to the sender when `self`); acked with `phx_reply ok` when `ack`.
 * - `access_token` → accepted silently; `phx_leave` → `phx_reply ok`, then `phx_close`.
 * Like the hosted service it refuses a broadcast payload over `maxPayloadBytes` (with `phx_reply
 * {status:'error'}` when acked), which is why the transport chunks large frames.
 */
export async function startFakeRealtime(options: { maxPayloadBytes?: number } = {}): Promise<{
  url: string;
  /** Broadcasts relayed, and refused for size. */
  stats: { relayed: number; refused: number; joins: number; heartbeats: number };
  close(): Promise<void>;
}> {
  const maxPayload = options.maxPayloadBytes ?? 256 * 1024;
  const stats = { relayed: 0, refused: 0, joins: 0, heartbeats: 0 };
  type Member = { ws: WebSocket; vsn: string; self: boolean; ack: boolean; joinRef: string | null };
  const topics = new Map<string, Set<Member>>();
  const server: Server = createServer((_q, r) => {
    r.statusCode = 404;
    r.end();
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname !== '/realtime/v1/websocket' || !u.searchParams.get('apikey')) {
      socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
      return;
    }
    const vsn = u.searchParams.get('vsn') ?? '1.0.0';
    wss.handleUpgrade(req, socket, head, (ws) => serve(ws, vsn));
  });

  type Msg = {
    topic: string;
    event: string;
    payload: Record<string, unknown>;
    ref: string | null;
    join_ref: string | null;
  };
  const encode = (vsn: string, m: Msg) =>
    vsn === '1.0.0' ? JSON.stringify(m) : JSON.stringify([m.join_ref, m.ref, m.topic, m.event, m.payload]);

  function decodeBinaryPush(buf: Buffer): Msg | undefined {
    if (buf[0] !== 3) return undefined;
    const [jl, rl, tl, el, ml, enc] = [buf[1], buf[2], buf[3], buf[4], buf[5], buf[6]] as number[];
    let o = 7;
    const take = (n: number) => {
      const s = buf.subarray(o, o + n).toString('latin1');
      o += n;
      return s;
    };
    const join_ref = take(jl as number);
    const ref = take(rl as number);
    const topic = take(tl as number);
    const event = take(el as number);
    take(ml as number);
    const body = buf.subarray(o);
    const payload = enc === 1 ? JSON.parse(body.toString('utf8')) : body;
    return {
      join_ref: join_ref || null,
      ref: ref || null,
      topic,
      event: 'broadcast',
      payload: { type: 'broadcast', event, payload },
    };
  }

  function serve(ws: WebSocket, vsn: string) {
    const joined = new Map<string, Member>();
    const reply = (m: Msg, status: 'ok' | 'error', response: Record<string, unknown> = {}) =>
      ws.send(
        encode(vsn, {
          topic: m.topic,
          event: 'phx_reply',
          payload: { status, response },
          ref: m.ref,
          join_ref: m.join_ref,
        }),
      );
    ws.on('message', (data, isBinary) => {
      let m: Msg | undefined;
      if (isBinary) m = decodeBinaryPush(data as Buffer);
      else {
        const raw = JSON.parse(data.toString()) as unknown;
        m = Array.isArray(raw)
          ? { join_ref: raw[0], ref: raw[1], topic: raw[2], event: raw[3], payload: raw[4] }
          : (raw as Msg);
      }
      if (!m) return;
      if (m.topic === 'phoenix' && m.event === 'heartbeat') {
        stats.heartbeats++;
        reply(m, 'ok');
        return;
      }
      switch (m.event) {
        case 'phx_join': {
          stats.joins++;
          const cfg =
            ((m.payload.config ?? {}) as { broadcast?: { self?: boolean; ack?: boolean } }).broadcast ?? {};
          const member: Member = { ws, vsn, self: !!cfg.self, ack: !!cfg.ack, joinRef: m.join_ref ?? m.ref };
          joined.set(m.topic, member);
          let set = topics.get(m.topic);
          if (!set) {
            set = new Set();
            topics.set(m.topic, set);
          }
          set.add(member);
          reply(m, 'ok', { postgres_changes: [] });
          return;
        }
        case 'phx_leave': {
          const member = joined.get(m.topic);
          if (member) topics.get(m.topic)?.delete(member);
          joined.delete(m.topic);
          reply(m, 'ok');
          ws.send(
            encode(vsn, {
              topic: m.topic,
              event: 'phx_close',
              payload: {},
              ref: m.ref,
              join_ref: m.join_ref,
            }),
          );
          return;
        }
        case 'access_token':
          return;
        case 'broadcast': {
          const sender = joined.get(m.topic);
          if (!sender) return;
          const size = Buffer.byteLength(JSON.stringify(m.payload));
          if (size > maxPayload) {
            stats.refused++;
            if (sender.ack) reply(m, 'error', { reason: `payload ${size} bytes exceeds ${maxPayload}` });
            return;
          }
          stats.relayed++;
          for (const peer of topics.get(m.topic) ?? []) {
            if (peer === sender && !sender.self) continue;
            if (peer.ws.readyState !== peer.ws.OPEN) continue;
            peer.ws.send(
              encode(peer.vsn, {
                topic: m.topic,
                event: 'broadcast',
                payload: m.payload,
                ref: null,
                join_ref: peer.joinRef,
              }),
            );
          }
          if (sender.ack) reply(m, 'ok');
          return;
        }
        default:
          reply(m, 'error', { reason: `unknown event ${m.event}` });
      }
    });
    ws.on('close', () => {
      for (const [topic, member] of joined) topics.get(topic)?.delete(member);
    });
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
