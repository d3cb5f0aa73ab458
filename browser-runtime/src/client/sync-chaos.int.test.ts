import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrate, startDirectorySandbox } from '@preview/router';
import { createTestDatabase, createTestRedis, TEST_REDIS_URL } from '@preview/testkit';
import { expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { PreviewClient } from './preview-client.ts';
import type { WebSocketConstructor } from './transport.ts';

const REPLICA_MAIN = fileURLToPath(
  import.meta.resolve('@preview/router').replace(/index\.ts$/, 'sync/testing/replica-main.ts'),
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

it(`${OPS} ops with router replicas killed and restarted at random: sandbox and Postgres equal the editor's state, every persisted op present`, {
  timeout: 240_000,
}, async () => {
  const db = await createTestDatabase({ max: 5 });
  db.pool.on('error', () => {});
  const redis = createTestRedis();
  const dir = await mkdtemp(join(tmpdir(), 'chaos-sandbox-'));
  const sandbox = await startDirectorySandbox({ dir });
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

    // The editor's model. A renamed-away path is never used again (see README: a rename replayed
    // across an owner failover is applied at least once).
    const model = new Map<string, string>();
    const retired = new Set<string>();
    let fresh = 0;
    const livePaths = () => [...model.keys()];
    const pick = <T>(a: T[]): T | undefined => a[Math.floor(Math.random() * a.length)];
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
          const to = `moved/${fresh++}.ts`;
          sync.rename(existing, to);
          model.set(to, model.get(existing) as string);
          model.delete(existing);
          retired.add(existing);
        } else {
          let path = `src/${Math.floor(Math.random() * 300)}.ts`;
          if (retired.has(path)) path = `src/new-${fresh++}.ts`;
          const content = `// op ${ops}\nexport const v = ${Math.random()};\n`;
          sync.write(path, content);
          model.set(path, content);
        }
      }
      await new Promise((r) => setTimeout(r, Math.random() < 0.9 ? 0 : 5));
    }
    sync.flush();
    // Let the chaos run a little longer (and at least a few kills), then let the cluster settle.
    await new Promise((r) => setTimeout(r, 1500));
    for (let i = 0; i < 100 && kills < 4; i++) await new Promise((r) => setTimeout(r, 100));
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
    expect(opens).toBeGreaterThan(1);
    expect(rejected).toEqual([]);
    // Every batch the editor sent was acked persisted.
    const maxSeq = Math.max(...persisted);
    expect(persisted.size).toBe(maxSeq);

    const want = Object.fromEntries([...model].sort());
    const inSandbox = Object.fromEntries(
      [...(await sandbox.files())].sort().map(([p, c]) => [p, c.toString('utf8')]),
    );
    const rows = await db.pool.query<{ path: string; content: Buffer; content_hash: string; size: number }>(
      'SELECT path, content, content_hash, size FROM project_files WHERE preview_id = $1 ORDER BY path',
      [previewId],
    );
    const inDb = Object.fromEntries(rows.rows.map((r) => [r.path, r.content.toString('utf8')]));
    const diff = (a: Record<string, string>) => {
      const missing = Object.keys(want).filter((k) => !(k in a));
      const extra = Object.keys(a).filter((k) => !(k in want));
      const differ = Object.keys(want).filter((k) => k in a && a[k] !== want[k]);
      return {
        missing: missing.slice(0, 5),
        extra: extra.slice(0, 5),
        differ: differ.slice(0, 5),
        counts: [missing.length, extra.length, differ.length],
      };
    };
    if (process.env.SYNC_DEBUG)
      console.log(JSON.stringify({ sandbox: diff(inSandbox), db: diff(inDb), kills, opens }));
    expect(inSandbox).toEqual(want);
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
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }).catch(() => {});
    await redis.cleanup();
    await db.drop();
  }
});
