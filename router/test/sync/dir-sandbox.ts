import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { FileBatch, OriginLedger, parseFrame, type ServerFrame } from '@preview/tiers';
import { WebSocketServer } from 'ws';

/**
 * TEST SANDBOX — not a fake of a service. A real sync endpoint that applies batches to a real
 * directory with the preview-daemon's rules (docker/preview-daemon/PROTOCOL.md): validate the whole
 * batch first (nothing written when any op is bad), write atomically (temp + rename), ack `applied`
 * with the batch's seq, reject with an `error` frame carrying the seq. It stands in for the sandbox
 * side where a container with the daemon is not available (the chaos test runs it in the test
 * process so it outlives the router replicas that are killed).
 *
 * Replay rules it implements, as the daemon does: a batch whose `origin` (editor client + its seq) was
 * processed before is answered as the first time (`OriginLedger`); one with an origin never processed
 * but a seq at or below the last applied is a replaced owner's, arriving late, and gets no answer; one
 * without an origin at or below the last applied seq is acked without being applied again; delete of
 * a missing file and rename of a missing source are no-ops.
 */
export async function startDirectorySandbox(options: { dir: string; token?: string }): Promise<{
  url: string;
  dir: string;
  /** Every file under `dir` (relative path → content). */
  files(): Promise<Map<string, Buffer>>;
  /** Sockets connected now. */
  connections(): number;
  close(): Promise<void>;
}> {
  const { dir } = options;
  await mkdir(dir, { recursive: true });
  let lastApplied = 0;
  let chain: Promise<void> = Promise.resolve();
  let tmpN = 0;
  const origins = new OriginLedger();

  async function apply(batch: FileBatch): Promise<ServerFrame | undefined> {
    const before = batch.origin && origins.seen(batch.origin);
    if (batch.seq <= lastApplied && !before)
      // Behind a newer batch and never applied: a replaced sync owner's, arriving late. No answer.
      return batch.origin ? undefined : { type: 'ack', seq: batch.seq, stage: 'applied' };
    if (before && !before.applied)
      return { type: 'error', code: before.code, seq: batch.seq, message: before.message };
    if (before) {
      if (batch.seq > lastApplied) lastApplied = batch.seq;
      return { type: 'ack', seq: batch.seq, stage: 'applied' };
    }
    for (const op of batch.ops) {
      const abs = (p: string) => join(dir, p);
      if (op.op === 'put') {
        const target = abs(op.path);
        await mkdir(dirname(target), { recursive: true });
        const tmp = `${target}.tmp-${process.pid}-${tmpN++}`;
        await writeFile(tmp, Buffer.from(op.content, op.encoding === 'base64' ? 'base64' : 'utf8'));
        await rename(tmp, target);
      } else if (op.op === 'delete') {
        await rm(abs(op.path), { force: true });
      } else if (op.from !== op.to) {
        try {
          await mkdir(dirname(abs(op.to)), { recursive: true });
          await rename(abs(op.from), abs(op.to));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        }
      }
    }
    lastApplied = batch.seq;
    if (batch.origin) origins.record(batch.origin);
    return { type: 'ack', seq: batch.seq, stage: 'applied' };
  }

  const server: Server = createServer((_req, res) => {
    res.statusCode = 404;
    res.end();
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    const auth = req.headers.authorization;
    if (!req.url?.startsWith('/__preview/sync') || (options.token && auth !== `Bearer ${options.token}`)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data) => {
        const r = parseFrame(FileBatch, data.toString());
        if (!r.ok) {
          if (!data.toString().includes('"batch"')) return; // hello / ping: nothing to apply
          ws.send(JSON.stringify(r.error));
          return;
        }
        const batch = r.value;
        chain = chain.then(async () => {
          let reply: ServerFrame | undefined;
          try {
            reply = await apply(batch);
          } catch (e) {
            const message = (e as Error).message;
            if (batch.origin) origins.record(batch.origin, { code: 'write_failed', message });
            reply = { type: 'error', code: 'write_failed', seq: batch.seq, message };
          }
          if (reply && ws.readyState === ws.OPEN) ws.send(JSON.stringify(reply));
        });
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;

  async function walk(rel: string, out: Map<string, Buffer>) {
    for (const d of await readdir(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) await walk(p, out);
      else out.set(p, await readFile(join(dir, p)));
    }
  }

  return {
    url: `ws://127.0.0.1:${port}/__preview/sync`,
    dir,
    async files() {
      await chain;
      const out = new Map<string, Buffer>();
      await walk('', out);
      return out;
    },
    connections: () => wss.clients.size,
    async close() {
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
