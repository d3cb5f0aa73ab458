import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  createMemoryPubSub,
  createMemorySyncState,
  createRealtimeBridge,
  createSyncHub,
  migrate,
  openWebSocketChannel,
  type RealtimeBridge,
  type SyncHub,
} from '@preview/router';
import {
  createTestDatabase,
  type FakeRealtimeServer,
  startFakeRealtimeServer,
  type TestDatabase,
} from '@preview/testkit';
import { createClient, type SupabaseClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { SyncSession } from '../client/sync-session.ts';
import { realtimeTransport } from './realtime-transport.ts';

/**
 * The real supabase-js editor → the in-repo Realtime server → the bridge → the router's sync hub
 * (Postgres) → the real preview-daemon (`node
 * dist/daemon.mjs` as a host process, the way docker/preview-daemon's own tests run it) with Vite:
 * files land in the project, and the daemon's `hmr` comes back to the editor for that edit.
 */

const REPO = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const DAEMON_DIR = join(REPO, 'docker/preview-daemon');
const ANON = 'anon-key-daemon-test';
const SERVICE = 'service-key-daemon-test';

let rt: FakeRealtimeServer;
let daemon: ChildProcess;
let port: number;
let projectDir: string;
let cacheDir: string;
let out = '';
const token = randomBytes(24).toString('hex');
const clients: SupabaseClient[] = [];
let bridge: RealtimeBridge | undefined;
let hub: SyncHub | undefined;
let db: TestDatabase | undefined;
let sync: SyncSession | undefined;

function supabase(key: string): SupabaseClient {
  const c = createClient(rt.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket as never },
  });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: DAEMON_DIR, stdio: 'ignore' });
  // Inside the repository, so that vite resolves from the checkout's node_modules (as in the image).
  mkdirSync(join(REPO, 'browser-runtime/.test-projects'), { recursive: true });
  projectDir = mkdtempSync(join(REPO, 'browser-runtime/.test-projects/rt-'));
  cacheDir = mkdtempSync(join(tmpdir(), 'preview-rt-daemon-cache-'));
  daemon = spawn(process.execPath, [join(DAEMON_DIR, 'dist/daemon.mjs')], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      PREVIEW_TEMPLATE: 'vite-vanilla',
      PREVIEW_DAEMON_TOKEN: token,
      PREVIEW_DAEMON_PORT: '0',
      PREVIEW_DAEMON_HOST: '127.0.0.1',
      PREVIEW_PROJECT_DIR: projectDir,
      PREVIEW_TEMPLATES_DIR: join(REPO, 'templates'),
      PREVIEW_CACHE_DIR: cacheDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemon.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  daemon.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  port = await new Promise<number>((resolve, reject) => {
    const t = setInterval(() => {
      const m = /"msg":"listening","port":(\d+)/.exec(out);
      if (m) {
        clearInterval(t);
        resolve(Number(m[1]));
      }
    }, 50);
    daemon.once('exit', (code) => {
      clearInterval(t);
      reject(new Error(`daemon exited ${code}:\n${out}`));
    });
  });
  for (let i = 0; ; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/__preview/health`).catch(() => undefined);
    if (r?.status === 200) break;
    if (i > 600 || out.includes('"phase":"error"')) throw new Error(`daemon not healthy:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  rt = await startFakeRealtimeServer({ apiKeys: [ANON, SERVICE] });
});

afterAll(async () => {
  sync?.close();
  await bridge?.close();
  await hub?.close();
  await db?.drop();
  for (const c of clients) await c.removeAllChannels();
  await rt?.close();
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
  }
  rmSync(projectDir, { recursive: true, force: true });
  try {
    rmdirSync(join(REPO, 'browser-runtime/.test-projects'));
  } catch {
    // another test's project is still there
  }
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('Realtime transport to a real preview-daemon', () => {
  it('writes the edit into the project and relays the daemon hmr for it', async () => {
    db = await createTestDatabase({ max: 5 });
    db.pool.on('error', () => {});
    await migrate(db.pool);
    const previewId = randomUUID();
    const userId = randomUUID();
    await db.pool.query(
      `INSERT INTO preview_sessions (id, user_id, template, state, tier) VALUES ($1, $2, 'vite-vanilla', 'ready', 'docker')`,
      [previewId, userId],
    );
    hub = createSyncHub({
      pool: db.pool,
      pubsub: createMemoryPubSub(),
      state: createMemorySyncState(),
      log: { debug() {}, info() {}, warn() {}, error() {} },
      openChannel: () => openWebSocketChannel({ url: `ws://127.0.0.1:${port}/__preview/sync`, token }),
    });
    // Public channel: this Realtime server has no database for the private-channel policies.
    bridge = createRealtimeBridge({ previewId, userId, realtime: supabase(SERVICE), hub, private: false });
    await bridge.ready;

    // Be the preview page's HMR client and load the module once, so Vite has an update to send.
    const vite = new WebSocket(`ws://127.0.0.1:${port}/`, 'vite-hmr');
    await new Promise((r) => vite.once('open', r));
    expect((await fetch(`http://127.0.0.1:${port}/src/main.js`)).status).toBe(200);

    sync = new SyncSession({
      transport: realtimeTransport({ client: supabase(ANON), previewId, private: false }),
    });
    const hmr: Array<{ seq: number; kind: string }> = [];
    sync.on('hmr', (e) => hmr.push(e));
    const main = readFileSync(join(projectDir, 'src/main.js'), 'utf8');
    sync.write('src/main.js', `${main}\n// edited over realtime\n`);
    await sync.whenPersisted();

    expect(readFileSync(join(projectDir, 'src/main.js'), 'utf8')).toContain('// edited over realtime');
    const row = await db.pool.query<{ content: Buffer }>(
      `SELECT content FROM project_files WHERE preview_id = $1 AND path = 'src/main.js'`,
      [previewId],
    );
    expect(row.rows[0]?.content.toString('utf8')).toContain('// edited over realtime');
    await expect.poll(() => hmr, { timeout: 30_000 }).toEqual([expect.objectContaining({ seq: 1 })]);
    vite.close();
    expect(rt.violations).toEqual([]);
  });
});
