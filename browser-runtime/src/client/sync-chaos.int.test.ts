import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrate } from '@preview/router';
import { startDirectorySandbox } from '@preview/router/testkit/sync';
import {
  createTestDatabase,
  createTestRedis,
  TEST_LABEL,
  TEST_PREVIEW_IMAGE,
  TEST_REDIS_URL,
  testDocker,
} from '@preview/testkit';
import { DAEMON_PORT } from '@preview/tiers';
import { expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { PreviewClient } from './preview-client.ts';
import type { WebSocketConstructor } from './transport.ts';

const REPLICA_MAIN = fileURLToPath(
  import.meta.resolve('@preview/router/testkit/sync').replace(/index\.ts$/, 'replica-main.ts'),
);
const OPS = 10_000;
const REPLICAS = 3;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** A router replica as a real child process. */
class Replica {
  proc: ChildProcess | undefined;
  ready = false;
  starts = 0;
  constructor(
    readonly port: number,
    readonly env: Record<string, string>,
  ) {}
  starting: Promise<void> | undefined;
  start(): Promise<void> {
    if (this.ready) return Promise.resolve();
    this.starting ??= this.#spawn().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }
  #spawn(): Promise<void> {
    this.starts++;
    const proc = spawn(process.execPath, ['--import', 'tsx', REPLICA_MAIN], {
      env: { ...process.env, ...this.env, PORT: String(this.port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    proc.on('exit', () => {
      if (this.proc === proc) this.ready = false;
    });
    return new Promise((resolve, reject) => {
      let out = '';
      proc.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('READY')) {
          this.ready = true;
          resolve();
        }
      });
      proc.once('exit', (code) =>
        reject(new Error(`replica on ${this.port} exited (${code}) before READY: ${err}`)),
      );
    });
  }
  kill() {
    this.ready = false;
    this.proc?.kill('SIGKILL');
  }
}

/** A TCP load balancer: each new connection goes to a random live replica (as behind a real LB). */
async function startBalancer(replicas: Replica[]): Promise<{ port: number; server: Server }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    const live = replicas.filter((r) => r.ready);
    const target = live[Math.floor(Math.random() * live.length)];
    if (!target) {
      client.destroy();
      return;
    }
    const up = connect(target.port, '127.0.0.1');
    const end = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
    };
    up.on('error', end);
    client.on('error', end);
    up.on('close', end);
    client.on('close', end);
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, server };
}

/** Where the batches land: the directory test sandbox, or a real preview-daemon in a hardened container. */
interface ChaosSandbox {
  url: string;
  /** sha256 of every file the editor may have written (template files of the container excluded). */
  hashes(): Promise<Record<string, string>>;
  close(): Promise<void>;
}

async function directorySandbox(): Promise<ChaosSandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'chaos-sandbox-'));
  const sb = await startDirectorySandbox({ dir });
  return {
    url: sb.url,
    async hashes() {
      const out: Record<string, string> = {};
      for (const [p, c] of await sb.files()) out[p] = sha256(c);
      return out;
    },
    async close() {
      await sb.close();
      await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }).catch(() => {});
    },
  };
}

async function containerSandbox(): Promise<ChaosSandbox> {
  const docker = testDocker();
  const token = randomBytes(24).toString('hex');
  const container = await docker.createContainer({
    Image: TEST_PREVIEW_IMAGE,
    Env: [`PREVIEW_TEMPLATE=vite-vanilla`, `PREVIEW_DAEMON_TOKEN=${token}`],
    Labels: { [TEST_LABEL]: '1' },
    ExposedPorts: { [`${DAEMON_PORT}/tcp`]: {} },
    Volumes: { '/project': {} },
    HostConfig: {
      Init: true,
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,nosuid,nodev,size=256m' },
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      PidsLimit: 512,
      Memory: 1024 * 1024 * 1024,
      MemorySwap: 1024 * 1024 * 1024,
      PortBindings: { [`${DAEMON_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] },
    },
  });
  const remove = () => container.remove({ force: true, v: true }).catch(() => {});
  try {
    await container.start();
    const port = Number(
      (await container.inspect()).NetworkSettings.Ports[`${DAEMON_PORT}/tcp`]?.[0]?.HostPort,
    );
    const base = `http://127.0.0.1:${port}`;
    const manifest = async () => {
      const r = await fetch(`${base}/__preview/manifest`, { headers: { authorization: `Bearer ${token}` } });
      if (!r.ok) throw new Error(`manifest answered ${r.status}`);
      return ((await r.json()) as { files: Record<string, string> }).files;
    };
    for (let i = 0; ; i++) {
      const ok = await fetch(`${base}/__preview/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (i > 600) throw new Error(`container ${container.id} never became healthy`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const template = await manifest();
    return {
      url: `ws://127.0.0.1:${port}/__preview/sync?token=${token}`,
      async hashes() {
        const all = await manifest();
        // Template files the editor never touched are not part of its state.
        return Object.fromEntries(Object.entries(all).filter(([p, h]) => template[p] !== h));
      },
      close: remove,
    };
  } catch (e) {
    await remove();
    throw e;
  }
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

it.each([
  ['the directory test sandbox', directorySandbox],
  ['a preview-daemon in a hardened container', containerSandbox],
])(
  `${OPS} ops with router replicas killed and restarted at random (%s): sandbox and Postgres equal the editor's state, every persisted op present`,
  {
    timeout: 300_000,
  },
  async (_kind, makeSandbox) => {
    const db = await createTestDatabase({ max: 5 });
    db.pool.on('error', () => {});
    const redis = createTestRedis();
    const sandbox = await makeSandbox();
    const replicas: Replica[] = [];
    let balancer: Server | undefined;
    let chaos: ReturnType<typeof setTimeout> | undefined;
    try {
      await migrate(db.pool);
      const previewId = randomUUID();
      await db.pool.query(
        `INSERT INTO preview_sessions (id, user_id, template, state) VALUES ($1, $2, 'vite-react', 'ready')`,
        [previewId, randomUUID()],
      );
      const env = {
        DATABASE_URL: db.url,
        REDIS_URL: TEST_REDIS_URL,
        REDIS_PREFIX: redis.prefix,
        SANDBOX_URL: sandbox.url,
        LEASE_MS: '1000',
      };
      for (let i = 0; i < REPLICAS; i++) replicas.push(new Replica(await freePort(), env));
      await Promise.all(replicas.map((r) => r.start()));
      const lb = await startBalancer(replicas);
      balancer = lb.server;

      // Kill a random replica every 300–900 ms and bring it back 100–600 ms later.
      let kills = 0;
      let stopChaos = false;
      const tick = () => {
        if (stopChaos) return;
        const up = replicas.filter((r) => r.ready);
        const victim = up[Math.floor(Math.random() * up.length)];
        if (victim && up.length > 1) {
          victim.kill();
          kills++;
          setTimeout(() => void victim.start().catch(() => {}), 100 + Math.random() * 500);
        }
        chaos = setTimeout(tick, 300 + Math.random() * 600);
      };
      chaos = setTimeout(tick, 300);

      const client = new PreviewClient({
        baseUrl: `http://127.0.0.1:${lb.port}`,
        token: 'unused-by-the-test-replicas',
        WebSocket: WebSocket as unknown as WebSocketConstructor,
      });
      const sync = client.sync(previewId, { backoff: { initialMs: 20, maxMs: 500 }, pingMs: 2000 });
      const persisted = new Set<number>();
      const rejected: unknown[] = [];
      let opens = 0;
      sync.on('persisted', (e) => persisted.add(e.seq));
      sync.on('rejected', (e) => rejected.push(e.error));
      sync.on('state', (e) => {
        if (e.state === 'open') opens++;
      });

      // The editor's model. Renames often have their source written again right after (`rename a→b;
      // put a`): a rename applied twice across an owner failover would move the new `a`.
      const model = new Map<string, string>();
      let fresh = 0;
      let renames = 0;
      let recreated = 0;
      const livePaths = () => [...model.keys()];
      const pick = <T>(a: T[]): T | undefined => a[Math.floor(Math.random() * a.length)];
      const put = (path: string) => {
        const content = `// op ${ops}\nexport const v = ${Math.random()};\n`;
        sync.write(path, content);
        model.set(path, content);
      };
      let ops = 0;
      while (ops < OPS) {
        const n = 1 + Math.floor(Math.random() * 8);
        for (let i = 0; i < n && ops < OPS; i++, ops++) {
          const roll = Math.random();
          const existing = pick(livePaths());
          if (roll < 0.12 && existing) {
            sync.delete(existing);
            model.delete(existing);
          } else if (roll < 0.22 && existing) {
            const to =
              Math.random() < 0.5 ? `moved/${fresh++}.ts` : `src/${Math.floor(Math.random() * 300)}.ts`;
            sync.rename(existing, to);
            if (to !== existing) {
              model.set(to, model.get(existing) as string);
              model.delete(existing);
            }
            renames++;
            if (Math.random() < 0.5 && ops + 1 < OPS) {
              // Flushed apart so the rename and the re-creation travel in separate batches.
              sync.flush();
              ops++;
              put(existing);
              recreated++;
            }
          } else put(`src/${Math.floor(Math.random() * 300)}.ts`);
        }
        await new Promise((r) => setTimeout(r, Math.random() < 0.9 ? 0 : 5));
      }
      sync.flush();
      // Let the chaos run a little longer: at least a few kills, and at least one of the replica the
      // editor is connected to (kills pick a random replica; a fast run can miss it), then settle.
      await new Promise((r) => setTimeout(r, 1500));
      for (let i = 0; i < 600 && (kills < 4 || opens < 2); i++) await new Promise((r) => setTimeout(r, 100));
      stopChaos = true;
      if (chaos) clearTimeout(chaos);
      // A restart can lose its port to another process for a moment: retry.
      const up = async (r: Replica) => {
        for (let i = 0; ; i++) {
          try {
            return await r.start();
          } catch (e) {
            if (i >= 5) throw e;
            await new Promise((res) => setTimeout(res, 200));
          }
        }
      };
      await Promise.all(replicas.map(up));
      await sync.whenPersisted();
      sync.close();

      expect(kills).toBeGreaterThan(3);
      expect(recreated).toBeGreaterThan(100);
      expect(renames).toBeGreaterThan(recreated);
      expect(opens).toBeGreaterThan(1);
      expect(rejected).toEqual([]);
      // Every batch the editor sent was acked persisted.
      const maxSeq = Math.max(...persisted);
      expect(persisted.size).toBe(maxSeq);

      const want = Object.fromEntries([...model].sort());
      const wantHashes = Object.fromEntries(Object.entries(want).map(([p, c]) => [p, sha256(c)]));
      const inSandbox = await sandbox.hashes();
      const rows = await db.pool.query<{ path: string; content: Buffer; content_hash: string; size: number }>(
        'SELECT path, content, content_hash, size FROM project_files WHERE preview_id = $1 ORDER BY path',
        [previewId],
      );
      const inDb = Object.fromEntries(rows.rows.map((r) => [r.path, r.content.toString('utf8')]));
      const diff = (a: Record<string, string>, ref: Record<string, string>) => {
        const missing = Object.keys(ref).filter((k) => !(k in a));
        const extra = Object.keys(a).filter((k) => !(k in ref));
        const differ = Object.keys(ref).filter((k) => k in a && a[k] !== ref[k]);
        return {
          missing: missing.slice(0, 5),
          extra: extra.slice(0, 5),
          differ: differ.slice(0, 5),
          counts: [missing.length, extra.length, differ.length],
        };
      };
      if (process.env.SYNC_DEBUG)
        console.log(
          JSON.stringify({ sandbox: diff(inSandbox, wantHashes), db: diff(inDb, want), kills, opens }),
        );
      expect(inSandbox).toEqual(wantHashes);
      expect(inDb).toEqual(want);
      for (const r of rows.rows) {
        expect(r.content_hash).toBe(createHash('sha256').update(r.content).digest('hex'));
        expect(r.size).toBe(r.content.length);
      }
    } finally {
      if (chaos) clearTimeout(chaos);
      for (const r of replicas) r.kill();
      balancer?.close();
      await sandbox.close();
      await redis.cleanup();
      await db.drop();
    }
  },
);
