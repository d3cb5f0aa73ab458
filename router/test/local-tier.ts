import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type Ack,
  type FileBatch,
  NotFoundError,
  type Placement,
  type PreviewSpec,
  type ServerFrame,
  type SyncChannel,
  type Tier,
  type TierName,
  type TierStatus,
  TierUnavailableError,
} from '@preview/tiers';
import { sleep } from '@preview/tiers/fly';
import { WebSocketServer } from 'ws';

/**
 * A server-side tier for route and proxy tests until the docker tier (agent branch) is merged:
 * each preview gets a real HTTP server on 127.0.0.1:0 serving its files, with a real WebSocket
 * endpoint (`/__hmr`: echoes, and pushes `{type:"update",path}` on apply). Readiness is explicit
 * (`setPhase`), so tests can observe the status page before the app is ready.
 */
export function createLocalServerTier(o: { name?: 'docker' | 'fly'; autoReady?: boolean } = {}) {
  const name: TierName = o.name ?? 'docker';
  const previews = new Map<
    string,
    {
      server: Server;
      wss: WebSocketServer;
      files: Map<string, string>;
      phase: TierStatus['phase'];
      message?: string;
      log: string[];
      suspended: boolean;
      /** Batches sent on a sync channel while suspended: a paused sandbox takes them after resume. */
      held: Array<() => void>;
    }
  >();
  const get = (id: string) => {
    const p = previews.get(id);
    if (!p) throw new NotFoundError('not_found', `preview ${id} not found on ${name}`);
    return p;
  };
  let creates = 0;
  const tier: Tier & {
    /** Sets what `status` reports: the phase, more log lines, and the status message (e.g. a build error). */
    setPhase(id: string, phase: TierStatus['phase'], log?: string[], message?: string): void;
    readonly creates: number;
    files(id: string): Map<string, string> | undefined;
    /** Whether the preview's sandbox is suspended (paused: it applies nothing until resumed). */
    suspended(id: string): boolean | undefined;
    /** The registered node this tier's docker placements name (set by the harness). */
    nodeId: string;
  } = {
    name,
    nodeId: '00000000-0000-4000-8000-000000000000',
    get creates() {
      return creates;
    },
    files: (id) => previews.get(id)?.files,
    suspended: (id) => previews.get(id)?.suspended,
    setPhase(id, phase, log, message) {
      const p = get(id);
      p.phase = phase;
      p.message = message;
      if (log) p.log.push(...log);
    },
    async create(spec: PreviewSpec): Promise<Placement> {
      creates++;
      const files = new Map<string, string>();
      for (const [k, v] of Object.entries(spec.files))
        files.set(
          k,
          typeof v === 'string'
            ? v
            : Buffer.from(v.content, v.encoding === 'base64' ? 'base64' : 'utf8').toString(),
        );
      for (const [name, value] of Object.entries(spec.env ?? {})) files.set(`__env/${name}`, value);
      const server = createServer((req, res) => {
        const path = (req.url ?? '/').split('?')[0]!.replace(/^\//, '') || 'index.html';
        const body = files.get(path);
        if (body === undefined) {
          res.writeHead(404).end('not found');
          return;
        }
        res.writeHead(200, {
          'content-type': path.endsWith('.html') ? 'text/html' : 'text/plain',
          'x-upstream': 'local',
        });
        res.end(body);
      });
      const wss = new WebSocketServer({ server, path: '/__hmr' });
      wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m.toString()}`)));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const port = (server.address() as AddressInfo).port;
      previews.set(spec.previewId, {
        server,
        wss,
        files,
        phase: o.autoReady ? 'ready' : 'installing',
        log: ['npm install'],
        suspended: false,
        held: [],
      });
      const upstream = `http://127.0.0.1:${port}`;
      return name === 'docker'
        ? {
            tier: 'docker',
            previewId: spec.previewId,
            nodeId: tier.nodeId,
            containerId: `local-${port}`,
            upstream,
          }
        : {
            tier: 'fly',
            previewId: spec.previewId,
            machineId: `m${port}`,
            region: 'local',
            upstream,
            instanceId: `m${port}`,
          };
    },
    async apply(id: string, batch: FileBatch): Promise<Ack> {
      const p = get(id);
      for (const op of batch.ops) {
        if (op.op === 'put')
          p.files.set(
            op.path,
            op.encoding === 'base64' ? Buffer.from(op.content, 'base64').toString() : op.content,
          );
        else if (op.op === 'delete') p.files.delete(op.path);
        else {
          p.files.set(op.to, p.files.get(op.from) ?? '');
          p.files.delete(op.from);
        }
        for (const c of p.wss.clients)
          c.send(JSON.stringify({ type: 'update', path: op.op === 'rename' ? op.to : op.path }));
      }
      return { type: 'ack', seq: batch.seq, stage: 'applied' };
    },
    async openSync(id: string): Promise<SyncChannel> {
      // Like a pool agent: a suspended (paused) sandbox takes no new channel.
      if (get(id).suspended)
        throw new TierUnavailableError('preview_suspended', `preview ${id} is suspended`, { tier: name });
      // In process: each batch is applied like `apply` and acked (or refused) on the next tick.
      const frames = new Set<(f: ServerFrame) => void>();
      const closes = new Set<(code: number, reason: string) => void>();
      let open = true;
      return {
        send(batch) {
          if (!open)
            throw new TierUnavailableError('tier_unavailable', 'sync channel is closed', { tier: name });
          const run = () =>
            tier.apply(id, batch).then(
              (ack) => {
                for (const l of frames) l(ack);
              },
              (e: Error) => {
                const f: ServerFrame = {
                  type: 'error',
                  code: 'write_failed',
                  message: e.message,
                  seq: batch.seq,
                };
                for (const l of frames) l(f);
              },
            );
          const p = previews.get(id);
          if (p?.suspended) p.held.push(run);
          else queueMicrotask(run);
        },
        onFrame(l) {
          frames.add(l);
          return () => frames.delete(l);
        },
        onClose(l) {
          closes.add(l);
          return () => closes.delete(l);
        },
        get open() {
          return open;
        },
        close() {
          if (!open) return;
          open = false;
          for (const l of closes) l(1000, 'closed');
        },
      };
    },
    async suspend(id) {
      get(id).suspended = true;
      get(id).phase = 'suspended';
    },
    async resume(id) {
      const p = get(id);
      p.suspended = false;
      p.phase = 'ready';
      for (const run of p.held.splice(0)) queueMicrotask(run);
    },
    async destroy(id) {
      const p = previews.get(id);
      if (!p) return false;
      previews.delete(id);
      for (const c of p.wss.clients) c.terminate();
      p.wss.close();
      p.server.closeAllConnections();
      await new Promise((r) => p.server.close(r));
      return true;
    },
    async status(id) {
      const p = previews.get(id);
      return p
        ? { phase: p.phase, log: [...p.log], ...(p.message ? { message: p.message } : {}) }
        : undefined;
    },
    async capacity() {
      return { available: 100 - previews.size, total: 100 };
    },
    async close() {
      for (const id of [...previews.keys()]) await tier.destroy(id);
    },
  };
  return tier;
}

/** A tier that is down: every create fails with TierUnavailableError (placement fall-through tests). */
export function createDownTier(name: TierName): Tier {
  const down = () => {
    throw new TierUnavailableError('tier_unavailable', `${name} is down (test)`, { tier: name });
  };
  return {
    name,
    create: async () => down(),
    apply: async () => down(),
    openSync: async () => down(),
    suspend: async () => down(),
    resume: async () => down(),
    destroy: async () => false,
    status: async () => undefined,
    capacity: async () => ({ available: 1, total: 1 }),
    close: async () => {},
  };
}

/**
 * Makes `tier`'s create first take `ms` (a loaded node's claim) and returns the same tier; an aborted
 * signal ends the wait with its reason, as a real tier's request does (placement deadline tests).
 */
export function withSlowCreate<T extends Tier>(tier: T, ms: number): T {
  const create = tier.create.bind(tier);
  tier.create = async (spec, o = {}) => {
    await sleep(ms, o.signal);
    return await create(spec, o);
  };
  return tier;
}
