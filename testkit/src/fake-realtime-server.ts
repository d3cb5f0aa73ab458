import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type JWTPayload, jwtVerify, SignJWT } from 'jose';
import type pg from 'pg';
import { type RawData, WebSocket, WebSocketServer } from 'ws';

/**
 * FAKE of Supabase's hosted Realtime (it cannot be reached from here), speaking the WebSocket
 * protocol exactly as @supabase/realtime-js 2.108 uses it, and checking every message it receives
 * against what that client can send. Anything else is recorded in `violations` and the socket is
 * closed with 1007, so a test that drives the real client through it also proves the client only
 * sent published shapes.
 *
 * Matched against (node_modules/@supabase/realtime-js/src, @supabase/phoenix/assets/js/phoenix):
 * - URL: supabase-js builds `<url>/realtime/v1`, phoenix `socket.js` appends `/websocket` and
 *   `endPointURL()` adds the `params` (`apikey`, from supabase-js `_initRealtimeClient`) and `vsn`.
 * - vsn 1.0.0 (`RealtimeClient.ts` `_initializeOptions`): each message is `JSON.stringify` of
 *   `{topic, event, payload, ref, join_ref}`.
 * - vsn 2.0.0, the default (`lib/constants.ts` DEFAULT_VSN; `lib/serializer.ts`): text messages are
 *   the array `[join_ref, ref, topic, event, payload]`; a `broadcast` push whose `payload.event` is a
 *   string goes binary, kind 3 "userBroadcastPush": u8 kind, u8 len(join_ref), u8 len(ref),
 *   u8 len(topic), u8 len(event), u8 len(metadata), u8 encoding (0 binary, 1 JSON), the five strings,
 *   then the user payload. The server → client broadcast is kind 4 "userBroadcast": u8 kind,
 *   u8 len(topic), u8 len(event), u8 len(metadata), u8 encoding, strings, payload
 *   (`_decodeUserBroadcast`), which the client turns into `{type:'broadcast', event, payload}`.
 * - Join (`RealtimeChannel.ts` `subscribe`): `phx_join` with `{config:{broadcast, presence,
 *   postgres_changes, private}, access_token?}`; the `ok` reply's `response.postgres_changes` is
 *   read. `join_ref` equals the join push's `ref` (phoenix `push.js` `send`).
 * - Heartbeat (phoenix `socket.js` `sendHeartbeat`): topic `phoenix`, event `heartbeat`, payload
 *   `{}`, answered with a `phx_reply` carrying the same ref.
 * - `send()` with `broadcast.ack` waits for a `phx_reply` to its push (`RealtimeChannel.ts` `send`).
 * - `access_token` pushes `{access_token}` to joined channels (`RealtimeClient.ts` `setAuth`).
 * - Broadcast payload size: the hosted service caps it per plan (256 KB on Free,
 *   https://supabase.com/docs/guides/realtime/limits); realtime-js checks nothing. `maxMessageBytes`
 *   plays that cap: a larger push is answered with an error reply and not delivered.
 * - Realtime Authorization (https://supabase.com/docs/guides/realtime/authorization): a join with
 *   `config.private: true` is authorized by the RLS policies on `realtime.messages`, evaluated in
 *   Postgres as the joining user: the JWT (`access_token` of the join, else the connection's
 *   `apikey`) is verified with the project's secret, then in one transaction that is rolled back a
 *   probe row is inserted for the topic, the role of the JWT's `role` claim is taken with
 *   `request.jwt.claims`, `request.jwt.claim.sub`/`.role` and `realtime.topic` set, and the probe is
 *   selected (may receive) and a row inserted (may broadcast). A join that may not receive is
 *   answered with an error reply; a broadcast without the right is answered with an error and not
 *   delivered. Private and public channels of one name are separate (a public subscriber never
 *   hears a private broadcast). Without `authorization` a private join is refused (no database to
 *   ask), as the service would refuse it without policies.
 *
 * @example
 * const rt = await startFakeRealtimeServer({ apiKeys: ['anon-key', 'service-key'] });
 * const supabase = createClient(rt.url, 'anon-key', { realtime: { transport: WebSocket } });
 */
export interface FakeRealtimeServer {
  /** The project URL to give `createClient` (http://127.0.0.1:PORT). */
  url: string;
  /** Port of the server. */
  port: number;
  /** Messages that realtime-js would never send; each closed its socket with 1007. */
  violations: string[];
  /** Broadcasts delivered (fan-out counted once per push). */
  broadcasts(): number;
  /** Every message received, decoded, for assertions. */
  received: Array<{ vsn: string; binary: boolean; topic: string; event: string }>;
  /** Sockets connected now. */
  connections(): number;
  /** Closes every client socket (as a network failure would); clients reconnect on their own. */
  dropAll(code?: number): void;
  close(): Promise<void>;
}

interface Joined {
  joinRef: string;
  self: boolean;
  ack: boolean;
  private: boolean;
  /** May broadcast (always on a public channel; the INSERT policy on a private one). */
  canWrite: boolean;
}

interface Conn {
  ws: WebSocket;
  vsn: '1.0.0' | '2.0.0';
  topics: Map<string, Joined>;
  apikey: string;
  accessToken?: string;
  /** Messages are handled one at a time, in order (a private join waits for Postgres). */
  chain: Promise<void>;
}

/** What a private join asks of the project's database. */
export interface FakeRealtimeAuthorization {
  /**
   * The project's database, with the `realtime.messages` policies applied (the router's
   * migrations); its user must be able to take the JWTs' roles (a superuser, as Realtime's admin).
   */
  pool: pg.Pool;
  /** HS256 secret of the project's JWTs: API keys (`role` anon / service_role) and user access tokens. */
  jwtSecret: string;
}

type Msg = { join_ref: string | null; ref: string | null; topic: string; event: string; payload: unknown };

const KIND_USER_BROADCAST_PUSH = 3;
const KIND_USER_BROADCAST = 4;

class Violation extends Error {}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function refOk(v: unknown): v is string | null {
  return v === null || (typeof v === 'string' && v.length > 0 && v.length <= 255);
}

/** Checks a text message against the vsn's shape; throws Violation. */
function decodeText(vsn: Conn['vsn'], text: string): Msg {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Violation('text message is not JSON');
  }
  let m: Msg;
  if (vsn === '2.0.0') {
    if (!Array.isArray(raw) || raw.length !== 5)
      throw new Violation('vsn 2.0.0 text message must be [join_ref, ref, topic, event, payload]');
    const [join_ref, ref, topic, event, payload] = raw as unknown[];
    m = { join_ref, ref, topic, event, payload } as Msg;
  } else {
    if (!isObj(raw)) throw new Violation('vsn 1.0.0 message must be a JSON object');
    const keys = Object.keys(raw).sort().join(',');
    if (keys !== 'event,join_ref,payload,ref,topic' && keys !== 'event,payload,ref,topic')
      throw new Violation(
        `vsn 1.0.0 message keys must be topic, event, payload, ref, join_ref (got ${keys})`,
      );
    m = { join_ref: (raw.join_ref ?? null) as string | null, ...raw } as Msg;
  }
  if (!refOk(m.join_ref ?? null) || !refOk(m.ref))
    throw new Violation('ref and join_ref must be strings or null');
  if (typeof m.topic !== 'string' || m.topic.length === 0)
    throw new Violation('topic must be a non-empty string');
  if (typeof m.event !== 'string' || m.event.length === 0)
    throw new Violation('event must be a non-empty string');
  if (!isObj(m.payload)) throw new Violation('payload must be an object');
  return m;
}

/** Decodes a kind-3 userBroadcastPush (lib/serializer.ts `_encodeUserBroadcastPush`). */
function decodeBinary(buf: Buffer): Msg & { binaryPayload: boolean } {
  if (buf.length < 7) throw new Violation('binary message shorter than its header');
  const kind = buf.readUInt8(0);
  if (kind !== KIND_USER_BROADCAST_PUSH)
    throw new Violation(`binary message kind ${kind}: realtime-js only sends kind 3 (userBroadcastPush)`);
  const lens = [1, 2, 3, 4, 5].map((i) => buf.readUInt8(i)) as [number, number, number, number, number];
  const encoding = buf.readUInt8(6);
  if (encoding !== 0 && encoding !== 1)
    throw new Violation(`binary payload encoding ${encoding} is neither 0 nor 1`);
  let off = 7;
  const strs: string[] = [];
  for (const n of lens) {
    if (off + n > buf.length) throw new Violation('binary header lengths run past the message');
    strs.push(buf.subarray(off, off + n).toString('latin1'));
    off += n;
  }
  const [joinRef, ref, topic, event, metadata] = strs as [string, string, string, string, string];
  if (!topic) throw new Violation('binary broadcast without a topic');
  if (!event) throw new Violation('binary broadcast without a user event');
  if (metadata) {
    try {
      if (!isObj(JSON.parse(metadata))) throw new Error();
    } catch {
      throw new Violation('binary metadata must be a JSON object');
    }
  }
  const body = buf.subarray(off);
  let payload: unknown = body;
  if (encoding === 1) {
    try {
      payload = JSON.parse(body.toString('utf8'));
    } catch {
      throw new Violation('binary broadcast with JSON encoding carries invalid JSON');
    }
  }
  return {
    join_ref: joinRef || null,
    ref: ref || null,
    topic,
    event: 'broadcast',
    payload: { type: 'broadcast', event, payload },
    binaryPayload: encoding === 0,
  };
}

function encodeUserBroadcast(topic: string, event: string, payload: unknown, binary: boolean): Buffer {
  const body = binary ? (payload as Buffer) : Buffer.from(JSON.stringify(payload), 'utf8');
  const t = Buffer.from(topic, 'latin1');
  const e = Buffer.from(event, 'latin1');
  const head = Buffer.from([KIND_USER_BROADCAST, t.length, e.length, 0, binary ? 0 : 1]);
  return Buffer.concat([head, t, e, body]);
}

function checkJoinPayload(p: Record<string, unknown>): Joined {
  const config = p.config;
  if (!isObj(config)) throw new Violation('phx_join payload.config must be an object');
  const b = config.broadcast ?? {};
  if (!isObj(b)) throw new Violation('config.broadcast must be an object');
  for (const k of ['ack', 'self'] as const)
    if (b[k] !== undefined && typeof b[k] !== 'boolean')
      throw new Violation(`config.broadcast.${k} must be boolean`);
  if (!isObj(config.presence)) throw new Violation('config.presence must be an object');
  if (!Array.isArray(config.postgres_changes))
    throw new Violation('config.postgres_changes must be an array');
  if (config.private !== undefined && typeof config.private !== 'boolean')
    throw new Violation('config.private must be boolean');
  if (p.access_token !== undefined && typeof p.access_token !== 'string')
    throw new Violation('access_token must be a string');
  return {
    joinRef: '',
    self: b.self === true,
    ack: b.ack === true,
    private: config.private === true,
    canWrite: config.private !== true,
  };
}

class Refused extends Error {}

/**
 * A Supabase API key as the service issues them: an HS256 JWT with `role` `anon` or `service_role`,
 * signed with the project's JWT secret (`iss` supabase, one year).
 *
 * @example
 * const anon = await signSupabaseApiKey({ secret, role: 'anon' });
 */
export async function signSupabaseApiKey(o: {
  secret: string;
  role: 'anon' | 'service_role';
}): Promise<string> {
  return await new SignJWT({ role: o.role, iss: 'supabase' })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime('365d')
    .sign(new TextEncoder().encode(o.secret));
}

/**
 * Evaluates the `realtime.messages` policies for `topic` as the holder of `token`, the way Supabase
 * Realtime does at join: rights are read inside a transaction that is always rolled back.
 */
async function authorizeTopic(
  auth: FakeRealtimeAuthorization,
  token: string,
  topic: string,
): Promise<{ canRead: boolean; canWrite: boolean }> {
  let claims: JWTPayload;
  try {
    claims = (await jwtVerify(token, new TextEncoder().encode(auth.jwtSecret))).payload;
  } catch (e) {
    throw new Refused(`Invalid JWT: ${(e as Error).message}`);
  }
  const role = claims['role'];
  if (typeof role !== 'string' || role.length === 0) throw new Refused('Invalid JWT: no role claim');
  const client = await auth.pool.connect();
  try {
    await client.query('BEGIN');
    const probe = await client.query<{ id: string }>(
      `INSERT INTO realtime.messages (topic, extension, private) VALUES ($1, 'broadcast', true) RETURNING id`,
      [topic],
    );
    try {
      await client.query(
        `SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true),
                set_config('request.jwt.claim.sub', $3, true), set_config('request.jwt.claim.role', $1, true),
                set_config('realtime.topic', $4, true)`,
        [role, JSON.stringify(claims), typeof claims.sub === 'string' ? claims.sub : '', topic],
      );
    } catch (e) {
      throw new Refused(`role ${JSON.stringify(role)} cannot be taken: ${(e as Error).message}`);
    }
    const read = await client.query('SELECT 1 FROM realtime.messages WHERE id = $1', [probe.rows[0]!.id]);
    let canWrite = true;
    await client.query('SAVEPOINT write_check');
    try {
      await client.query(
        `INSERT INTO realtime.messages (topic, extension, private) VALUES ($1, 'broadcast', true)`,
        [topic],
      );
    } catch (e) {
      if ((e as { code?: string }).code !== '42501') throw e; // insufficient_privilege / RLS refusal
      canWrite = false;
      await client.query('ROLLBACK TO SAVEPOINT write_check');
    }
    return { canRead: read.rowCount === 1, canWrite };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}

/** Supabase's own roles that bypass RLS or own nothing: the service role takes every channel. */
async function ensureServiceRole(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ t: string | null }>(
    `SELECT to_regclass('realtime.messages')::text AS t`,
  );
  if (!rows[0]?.t)
    throw new Error(
      'options.authorization.pool: realtime.messages does not exist (apply the router migrations first)',
    );
  await pool.query(`DO $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN BYPASSRLS;
      END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END $$`);
  await pool.query('GRANT USAGE ON SCHEMA realtime TO service_role');
  await pool.query('GRANT SELECT, INSERT ON realtime.messages TO service_role');
}

export async function startFakeRealtimeServer(options: {
  /** Keys accepted as `apikey` (an anon key, a service key). */
  apiKeys: string[];
  /** Largest message accepted, in bytes. Default 256 KiB (the Free plan's broadcast payload size). */
  maxMessageBytes?: number;
  /** Authorizes private channels against the project's database; unset → private joins are refused. */
  authorization?: FakeRealtimeAuthorization;
}): Promise<FakeRealtimeServer> {
  const maxBytes = options.maxMessageBytes ?? 256 * 1024;
  const auth = options.authorization;
  if (auth) await ensureServiceRole(auth.pool);
  const conns = new Set<Conn>();
  const violations: string[] = [];
  const received: FakeRealtimeServer['received'] = [];
  let delivered = 0;

  const server: Server = createServer((_req, res) => {
    res.statusCode = 404;
    res.end();
  });
  // maxPayload well above the cap, so an oversized push is answered like the service does rather
  // than cutting the socket.
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });

  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const apikey = url.searchParams.get('apikey');
    const vsn = url.searchParams.get('vsn');
    if (url.pathname !== '/realtime/v1/websocket') {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    if (!apikey || !options.apiKeys.includes(apikey)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
      return;
    }
    if (vsn !== '1.0.0' && vsn !== '2.0.0') {
      violations.push(`connect with vsn ${vsn}: realtime-js only uses 1.0.0 or 2.0.0`);
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn: Conn = { ws, vsn, topics: new Map(), apikey, chain: Promise.resolve() };
      conns.add(conn);
      ws.on('close', () => conns.delete(conn));
      ws.on('message', (data: RawData, isBinary: boolean) => {
        conn.chain = conn.chain
          .then(() => onMessage(conn, data as Buffer, isBinary))
          .catch((e: unknown) => {
            if (!(e instanceof Violation)) {
              violations.push(`server error: ${(e as Error).message}`);
              ws.close(1011, 'server error');
              return;
            }
            violations.push(e.message);
            ws.close(1007, e.message.slice(0, 120));
          });
      });
    });
  });

  function send(conn: Conn, m: Msg) {
    if (conn.ws.readyState !== WebSocket.OPEN) return;
    conn.ws.send(
      conn.vsn === '2.0.0'
        ? JSON.stringify([m.join_ref, m.ref, m.topic, m.event, m.payload])
        : JSON.stringify({
            topic: m.topic,
            event: m.event,
            payload: m.payload,
            ref: m.ref,
            join_ref: m.join_ref,
          }),
    );
  }

  function reply(conn: Conn, m: Msg, status: 'ok' | 'error', response: object) {
    send(conn, {
      join_ref: m.join_ref,
      ref: m.ref,
      topic: m.topic,
      event: 'phx_reply',
      payload: { status, response },
    });
  }

  async function onMessage(conn: Conn, data: Buffer, isBinary: boolean): Promise<void> {
    if (data.length > maxBytes) {
      // Decode enough to answer the push; the service refuses it without delivering.
      const m = isBinary ? decodeBinary(data) : decodeText(conn.vsn, data.toString('utf8'));
      received.push({ vsn: conn.vsn, binary: isBinary, topic: m.topic, event: m.event });
      if (m.ref) reply(conn, m, 'error', { reason: `payload too large: ${data.length} > ${maxBytes} bytes` });
      return;
    }
    let m: Msg & { binaryPayload?: boolean };
    if (isBinary) {
      if (conn.vsn !== '2.0.0') throw new Violation('binary message on a vsn 1.0.0 socket');
      m = decodeBinary(data);
    } else m = decodeText(conn.vsn, data.toString('utf8'));
    received.push({ vsn: conn.vsn, binary: isBinary, topic: m.topic, event: m.event });
    const payload = m.payload as Record<string, unknown>;

    if (m.topic === 'phoenix') {
      if (m.event !== 'heartbeat')
        throw new Violation(`topic phoenix carries only heartbeat (got ${m.event})`);
      if (!m.ref) throw new Violation('heartbeat without a ref');
      if (Object.keys(payload).length !== 0) throw new Violation('heartbeat payload must be {}');
      reply(conn, m, 'ok', {});
      return;
    }
    if (!m.topic.startsWith('realtime:')) throw new Violation(`topic ${m.topic} lacks the realtime: prefix`);
    if (!m.ref && m.event !== 'broadcast') throw new Violation(`${m.event} push without a ref`);

    switch (m.event) {
      case 'phx_join': {
        if (m.join_ref !== m.ref) throw new Violation('phx_join: join_ref must equal ref');
        const j = checkJoinPayload(payload);
        j.joinRef = m.join_ref as string;
        if (typeof payload.access_token === 'string') conn.accessToken = payload.access_token;
        if (j.private) {
          const subTopic = m.topic.slice('realtime:'.length);
          if (!auth) {
            reply(conn, m, 'error', {
              reason: 'private channels need Realtime Authorization: this server has no database',
            });
            return;
          }
          try {
            const rights = await authorizeTopic(auth, conn.accessToken ?? conn.apikey, subTopic);
            if (!rights.canRead)
              throw new Refused(
                `Unauthorized: You do not have permissions to read from this Channel topic: ${subTopic}`,
              );
            j.canWrite = rights.canWrite;
          } catch (e) {
            if (!(e instanceof Refused)) throw e;
            conn.topics.delete(m.topic);
            reply(conn, m, 'error', { reason: e.message });
            return;
          }
        }
        conn.topics.set(m.topic, j);
        reply(conn, m, 'ok', { postgres_changes: [] });
        return;
      }
      case 'phx_leave': {
        const j = conn.topics.get(m.topic);
        if (j && m.join_ref !== j.joinRef) throw new Violation('phx_leave: join_ref of another join');
        conn.topics.delete(m.topic);
        reply(conn, m, 'ok', {});
        return;
      }
      case 'access_token': {
        if (typeof payload.access_token !== 'string')
          throw new Violation('access_token payload needs a string');
        conn.accessToken = payload.access_token;
        return; // the service does not reply to it
      }
      case 'broadcast': {
        const j = conn.topics.get(m.topic);
        if (!j) {
          // Pushes to a topic that is not joined are answered like Phoenix does: an error reply.
          if (m.ref) reply(conn, m, 'error', { reason: 'unmatched topic' });
          return;
        }
        if (m.join_ref !== j.joinRef) throw new Violation('broadcast: join_ref does not match the join');
        if (payload.type !== 'broadcast' || typeof payload.event !== 'string')
          throw new Violation('broadcast payload must be {type:"broadcast", event, payload}');
        if (!j.canWrite) {
          if (m.ref)
            reply(conn, m, 'error', { reason: 'Unauthorized: You do not have permissions to write' });
          return;
        }
        delivered++;
        for (const other of conns) {
          if (other === conn && !j.self) continue;
          // A private channel and a public one of the same name are different channels.
          if (other.topics.get(m.topic)?.private !== j.private || other.ws.readyState !== WebSocket.OPEN)
            continue;
          if (other.vsn === '2.0.0')
            other.ws.send(
              encodeUserBroadcast(m.topic, payload.event, payload.payload, m.binaryPayload === true),
            );
          else send(other, { join_ref: null, ref: null, topic: m.topic, event: 'broadcast', payload });
        }
        if (j.ack && m.ref) reply(conn, m, 'ok', {});
        return;
      }
      case 'presence':
        reply(conn, m, 'error', { reason: 'presence is not supported by this fake' });
        return;
      default:
        throw new Violation(`event ${m.event} is not one realtime-js sends on a channel`);
    }
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    violations,
    received,
    broadcasts: () => delivered,
    connections: () => conns.size,
    dropAll(code = 1011) {
      for (const c of conns) c.ws.close(code, 'dropped by test');
    },
    async close() {
      for (const c of conns) c.ws.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
