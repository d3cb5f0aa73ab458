/**
 * `npm run bench -- sync [--edits N] [--polling-edits N]`: edit → dev server HMR update sent.
 *
 * - `p50_ms` / `p99_ms`: the full path — PreviewClient (Node, `ws`) → router sync hub (real server,
 *   real Postgres write-behind) → docker tier `openSync` → pool agent → preview-daemon in a hardened
 *   container → file on disk → Vite → `hmr` event back to the editor. Measured from `write()` to the
 *   editor receiving `hmr` for that batch (so it also includes the way back).
 * - `raw_vite_p50_ms`: the same React component edit on the same machine in the same run, straight to
 *   disk, Vite in this process: write the file → Vite's `update` message on its HMR socket.
 * - `polling_p50_ms`: the reference of the original plans — a daemon that polls the router for files
 *   every 3 s: edits go through the hub to Postgres; a loop GETs the project's files over HTTP every
 *   3 s, writes what changed into a Vite project; measured from the edit to Vite's `update`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFileSync, rm, writeFile } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PreviewClient, type WebSocketConstructor } from '@preview/browser-runtime';
import { createMemoryPubSub, createMemorySyncState, createSyncHub, migrate } from '@preview/router';
import { serveSyncHub } from '@preview/router/testkit/sync';
import { createTestDatabase } from '@preview/testkit';
import { createDockerTier } from '@preview/tiers/docker';
import { createServer as createVite } from 'vite';
import { WebSocket } from 'ws';
import { startBenchAgent } from './_agent.ts';
import { percentile, round1 } from './stats.ts';

const mkdirP = promisify(mkdir);
const writeFileP = promisify(writeFile);
const rmP = promisify(rm);

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

const templateDir = join(import.meta.dirname, '../../templates/vite-react');
const tpl = (f: string) => readFileSync(join(templateDir, f), 'utf8');
const app = (n: number) =>
  `import { useState } from 'react';\n\nexport default function App() {\n  const [count, setCount] = useState(0);\n  return (\n    <main>\n      <h1>edit ${n}</h1>\n      <button type="button" onClick={() => setCount((c) => c + 1)}>count is {count}</button>\n    </main>\n  );\n}\n`;
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Vite in this process on a project dir; resolves `update` messages on its HMR socket. */
async function startRawVite(dir: string) {
  const vite = await createVite({
    root: dir,
    logLevel: 'silent',
    configFile: false,
    plugins: [(await import('@vitejs/plugin-react')).default()],
    server: { port: 0, host: '127.0.0.1', strictPort: false },
  });
  await vite.listen();
  const addr = vite.httpServer?.address();
  if (!addr || typeof addr !== 'object') throw new Error('vite did not listen');
  const port = addr.port;
  // Load the module graph the way a browser would, so that App.jsx is a hot-updatable module.
  await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
  await vite.transformRequest('/src/main.jsx');
  await vite.transformRequest('/src/App.jsx');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, 'vite-hmr');
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  let waiter: ((t: number) => void) | undefined;
  // The page's re-fetch of the updated module: until it lands, the module is not back in Vite's
  // graph and the next write may produce no update, so edits wait for it (outside the timing).
  let refetched: Promise<unknown> = Promise.resolve();
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString()) as {
      type: string;
      updates?: Array<{ acceptedPath: string; timestamp: number }>;
    };
    // Behave like the page: fetch the updated module, so it stays in the module graph.
    if (m.updates?.length)
      refetched = Promise.all(
        m.updates.map((u) =>
          fetch(`http://127.0.0.1:${port}${u.acceptedPath}?t=${u.timestamp}`)
            .then((r) => r.text())
            .catch(() => {}),
        ),
      );
    if ((m.type === 'update' || m.type === 'full-reload') && waiter) {
      const w = waiter;
      waiter = undefined;
      w(performance.now());
    }
  });
  return {
    settled: () => refetched,
    nextUpdate(timeoutMs = 2000): Promise<number> {
      return new Promise((resolve) => {
        const t = setTimeout(() => {
          waiter = undefined;
          resolve(Number.NaN);
        }, timeoutMs);
        waiter = (at) => {
          clearTimeout(t);
          resolve(at);
        };
      });
    },
    async close() {
      ws.close();
      await vite.close();
    },
  };
}

async function makeViteProject(): Promise<string> {
  // Inside the repo so that `react` and `vite` resolve from the workspace's node_modules.
  const dir = join(import.meta.dirname, '..', `.tmp-vite-${randomBytes(4).toString('hex')}`);
  await mkdirP(join(dir, 'src'), { recursive: true });
  await writeFileP(join(dir, 'index.html'), tpl('index.html'));
  await writeFileP(join(dir, 'src/main.jsx'), tpl('src/main.jsx'));
  await writeFileP(join(dir, 'src/App.jsx'), app(0));
  return dir;
}

export default async function sync(args: string[]): Promise<object> {
  const edits = flag(args, 'edits', 200);
  const pollingEdits = flag(args, 'polling-edits', 10);
  const db = await createTestDatabase({ max: 10 });
  db.pool.on('error', () => {});
  await migrate(db.pool);
  const cleanup: Array<() => Promise<unknown>> = [() => db.drop()];
  const result: Record<string, unknown> = {};
  try {
    // ---- raw Vite -------------------------------------------------------------------------------
    const rawDir = await makeViteProject();
    cleanup.push(() => rmP(rawDir, { recursive: true, force: true }));
    const raw = await startRawVite(rawDir);
    cleanup.push(() => raw.close());
    const rawMs: number[] = [];
    let rawMisses = 0;
    for (let i = 1; i <= edits; i++) {
      if (i % 25 === 0)
        process.stderr.write(`sync bench: raw Vite ${i} edits, ${rawMisses} without update\n`);
      const next = raw.nextUpdate();
      const t0 = performance.now();
      await writeFileP(join(rawDir, 'src/App.jsx'), app(i));
      const at = await next;
      if (Number.isFinite(at)) rawMs.push(at - t0);
      else rawMisses++;
      await raw.settled();
      // Vite's watcher (chokidar) passes at most one `change` per file per 50 ms and drops the rest:
      // writes closer than that would get no update at all, and the baseline would rest on the
      // writes that happened to be spaced out.
      await sleep(60);
    }
    result['raw_vite_p50_ms'] = round1(percentile(rawMs, 50));
    result['raw_vite_p99_ms'] = round1(percentile(rawMs, 99));
    result['raw_vite_misses'] = rawMisses;
    process.stderr.write(`sync bench: raw Vite done (${rawMs.length} updates)\n`);

    // ---- docker tier through router + agent + daemon --------------------------------------------
    const b = await startBenchAgent({
      WARM_POOL: 'vite-react=1',
      NODE_SLOTS: '4',
      PREVIEW_MEMORY_MIB: '512',
    });
    cleanup.push(() => b.stop());
    const node = { nodeId: randomUUID(), url: b.agent.url, token: b.token };
    const docker = createDockerTier({
      pickNode: async () => node,
      nodeOf: async () => node,
      nodes: async () => [node],
    });
    cleanup.push(() => docker.close());
    const previewId = randomUUID();
    await db.pool.query(
      `INSERT INTO preview_sessions (id, user_id, template, state, tier) VALUES ($1, $2, 'vite-react', 'ready', 'docker')`,
      [previewId, randomUUID()],
    );
    await b.agent.pools.populate();
    await b.agent.pools.settled();
    const placed = await docker.create({
      previewId,
      userId: randomUUID(),
      template: 'vite-react',
      files: {
        'package.json': tpl('package.json'),
        'package-lock.json': tpl('package-lock.json'),
        'index.html': tpl('index.html'),
        'vite.config.js': tpl('vite.config.js'),
        'src/main.jsx': tpl('src/main.jsx'),
        'src/App.jsx': app(0),
      },
    });
    const hub = createSyncHub({
      pool: db.pool,
      pubsub: createMemoryPubSub(),
      state: createMemorySyncState(),
      log: silent,
      openChannel: (id) => docker.openSync(id),
    });
    const srv = await serveSyncHub(hub);
    cleanup.push(async () => {
      await srv.close();
      await hub.close();
    });
    // A browser on the preview loads the app, so App.jsx is in Vite's module graph inside the sandbox.
    const placement = await docker.status(previewId);
    result['sandbox_phase'] = placement?.phase;
    const client = new PreviewClient({
      baseUrl: srv.url,
      token: 'bench',
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const session = client.sync(previewId);
    await new Promise<void>((r) => session.on('state', (e) => e.state === 'open' && r()));
    const hmrBySeq = new Map<number, number>();
    const sandboxMs: number[] = [];
    const appliedMs: number[] = [];
    let hmrWaiter: ((seq: number) => void) | undefined;
    session.on('applied', (e) => appliedMs.push(e.ms));
    session.on('hmr', (e) => {
      hmrBySeq.set(e.seq, e.ms);
      sandboxMs.push(e.sandboxMs);
      hmrWaiter?.(e.seq);
    });
    // The first edits warm the sandbox's module graph (Vite compiles App.jsx on first request).
    const upstream = { upstream: placed.tier === 'docker' ? placed.upstream.replace(/\/$/, '') : undefined };
    if (upstream.upstream) {
      await fetch(`${upstream.upstream}/`, { headers: { 'x-agent-token': b.token } }).catch(() => {});
      await fetch(`${upstream.upstream}/src/App.jsx`, { headers: { 'x-agent-token': b.token } }).catch(
        () => {},
      );
    }
    const viewer = upstream.upstream
      ? new WebSocket(`${upstream.upstream.replace(/^http/, 'ws')}/`, 'vite-hmr', {
          headers: { 'x-agent-token': b.token },
        })
      : undefined;
    viewer?.on('error', () => {});
    // The viewer behaves like the page: on an update it fetches the new module version.
    viewer?.on('message', (d) => {
      const m = JSON.parse(d.toString()) as { updates?: Array<{ acceptedPath: string; timestamp: number }> };
      for (const u of m.updates ?? [])
        void fetch(`${upstream.upstream}${u.acceptedPath}?t=${u.timestamp}`, {
          headers: { 'x-agent-token': b.token },
        }).catch(() => {});
    });
    await sleep(500);
    const full: number[] = [];
    let misses = 0;
    let seq = 0;
    for (let i = 1; i <= edits + 5; i++) {
      const got = new Promise<boolean>((resolve) => {
        const t = setTimeout(() => {
          hmrWaiter = undefined;
          resolve(false);
        }, 1500);
        hmrWaiter = (s) => {
          if (s < seq) return;
          clearTimeout(t);
          hmrWaiter = undefined;
          resolve(true);
        };
      });
      session.write('src/App.jsx', app(1000 + i));
      seq++;
      const ok = await got;
      const ms = hmrBySeq.get(seq);
      if (ok && ms !== undefined && i > 5) full.push(ms);
      else if (i > 5) misses++;
      if (i % 25 === 0) process.stderr.write(`sync bench: ${i} edits, ${misses} without hmr\n`);
      await sleep(20);
    }
    await session.whenPersisted();
    session.close();
    viewer?.close();
    result['p50_ms'] = round1(percentile(full, 50));
    result['p99_ms'] = round1(percentile(full, 99));
    result['edits'] = full.length;
    result['sandbox_hmr_p50_ms'] = round1(percentile(sandboxMs, 50));
    result['applied_p50_ms'] = round1(percentile(appliedMs, 50));
    result['hmr_misses'] = misses;
    result['overhead_p50_ms'] = round1(percentile(full, 50) - percentile(rawMs, 50));

    // ---- polling reference ------------------------------------------------------------------------
    // The router side of the reference: GET the project's files (what a polling daemon would call).
    const filesApi = createServer(async (req, res) => {
      const id = /^\/v1\/previews\/([0-9a-f-]{36})\/files$/.exec(req.url ?? '')?.[1];
      if (!id) {
        res.statusCode = 404;
        res.end();
        return;
      }
      const r = await db.pool.query<{ path: string; content: Buffer; content_hash: string }>(
        'SELECT path, content, content_hash FROM project_files WHERE preview_id = $1',
        [id],
      );
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify(
          r.rows.map((x) => ({ path: x.path, hash: x.content_hash, content: x.content.toString('base64') })),
        ),
      );
    });
    await new Promise<void>((r) => filesApi.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => filesApi.close(r)));
    const filesUrl = `http://127.0.0.1:${(filesApi.address() as { port: number }).port}/v1/previews`;
    const pollDir = await makeViteProject();
    cleanup.push(() => rmP(pollDir, { recursive: true, force: true }));
    const pollVite = await startRawVite(pollDir);
    cleanup.push(() => pollVite.close());
    const pollPreview = randomUUID();
    await db.pool.query(
      `INSERT INTO preview_sessions (id, user_id, template, state) VALUES ($1, $2, 'vite-react', 'ready')`,
      [pollPreview, randomUUID()],
    );
    // The polling daemon: every 3 s, GET the files and write what changed.
    const seen = new Map<string, string>();
    let polling = true;
    const poller = (async () => {
      while (polling) {
        try {
          const list = (await (await fetch(`${filesUrl}/${pollPreview}/files`)).json()) as Array<{
            path: string;
            hash: string;
            content: string;
          }>;
          for (const f of list) {
            if (seen.get(f.path) === f.hash || !f.path.startsWith('src/')) continue;
            seen.set(f.path, f.hash);
            await writeFileP(join(pollDir, f.path), Buffer.from(f.content, 'base64'));
          }
        } catch {
          // the next poll tries again
        }
        await sleep(3000);
      }
    })();
    // Edits for the polling reference go through a hub whose sandbox is unused (a local directory):
    // only Postgres matters to the poller.
    const pollSandboxDir = `${pollDir}-sandbox`;
    await mkdirP(pollSandboxDir, { recursive: true });
    cleanup.push(() => rmP(pollSandboxDir, { recursive: true, force: true }));
    const { openWebSocketChannel } = await import('@preview/router');
    const { startDirectorySandbox } = await import('@preview/router/testkit/sync');
    const pollSandbox = await startDirectorySandbox({ dir: pollSandboxDir });
    cleanup.push(() => pollSandbox.close());
    const pollHub = createSyncHub({
      pool: db.pool,
      pubsub: createMemoryPubSub(),
      state: createMemorySyncState(),
      log: silent,
      openChannel: () => openWebSocketChannel({ url: pollSandbox.url }),
    });
    const pollSrv = await serveSyncHub(pollHub);
    cleanup.push(async () => {
      await pollSrv.close();
      await pollHub.close();
    });
    const pollClient = new PreviewClient({
      baseUrl: pollSrv.url,
      token: 'bench',
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const pollSession = pollClient.sync(pollPreview);
    const pollMs: number[] = [];
    for (let i = 1; i <= pollingEdits; i++) {
      // Edits arrive at random moments relative to the poll loop, as a user's would.
      await sleep(Math.random() * 3000);
      const next = pollVite.nextUpdate(6000);
      const t0 = performance.now();
      pollSession.write('src/App.jsx', app(5000 + i));
      const at = await next;
      if (Number.isFinite(at)) pollMs.push(at - t0);
    }
    polling = false;
    await poller;
    pollSession.close();
    result['polling_p50_ms'] = round1(percentile(pollMs, 50));
    result['polling_edits'] = pollMs.length;
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => {});
  }
  return {
    p50_ms: result['p50_ms'],
    p99_ms: result['p99_ms'],
    raw_vite_p50_ms: result['raw_vite_p50_ms'],
    polling_p50_ms: result['polling_p50_ms'],
    ...result,
  };
}
