import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const PKG_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = join(PKG_DIR, '../..');
export const TEMPLATES_DIR = join(REPO_DIR, 'templates');

/** Bundles dist/daemon.mjs exactly as the image build does. */
export function buildDaemon(): string {
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: PKG_DIR, stdio: 'ignore' });
  return join(PKG_DIR, 'dist/daemon.mjs');
}

/**
 * A temp project directory inside the repository, so that the checkout's node_modules (vite,
 * react, @vitejs/plugin-react) resolve from it the way the image's template node_modules do.
 */
export function tempProjectDir(): string {
  const base = join(PKG_DIR, '.test-projects');
  mkdirSync(base, { recursive: true });
  return mkdtempSync(join(base, 'p-'));
}

export interface HostDaemon {
  port: number;
  /** The daemon process's id (its dev servers are its children). */
  pid: number;
  token: string;
  projectDir: string;
  output(): string;
  stop(): Promise<void>;
}

/** Runs `node dist/daemon.mjs` as a host process on a free port; resolves once it listens. */
export async function spawnDaemon(opts: {
  template: string;
  projectDir?: string;
  env?: Record<string, string>;
}): Promise<HostDaemon> {
  const projectDir = opts.projectDir ?? tempProjectDir();
  const token = randomBytes(24).toString('hex');
  const cacheDir = mkdtempSync('/tmp/preview-daemon-cache-');
  const child: ChildProcess = spawn(process.execPath, [join(PKG_DIR, 'dist/daemon.mjs')], {
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: process.env['HOME'] ?? '/tmp',
      PREVIEW_TEMPLATE: opts.template,
      PREVIEW_DAEMON_TOKEN: token,
      PREVIEW_DAEMON_PORT: '0',
      PREVIEW_DAEMON_HOST: '127.0.0.1',
      PREVIEW_PROJECT_DIR: projectDir,
      PREVIEW_TEMPLATES_DIR: TEMPLATES_DIR,
      PREVIEW_CACHE_DIR: cacheDir,
      ...(process.env['npm_config_cache'] ? { npm_config_cache: process.env['npm_config_cache'] } : {}),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`daemon did not listen:\n${out}`)), 30_000);
    const check = () => {
      const m = /"msg":"listening","port":(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        child.stdout!.off('data', check);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', check);
    child.on('exit', (code) => reject(new Error(`daemon exited ${code}:\n${out}`)));
  });
  return {
    port,
    pid: child.pid!,
    token,
    projectDir,
    output: () => out,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(cacheDir, { recursive: true, force: true });
      if (!opts.projectDir) rmSync(projectDir, { recursive: true, force: true });
    },
  };
}

type Frame = { type: string; [k: string]: unknown };

/** A sync-socket client that keeps every frame it got, and waits for the one a test needs. */
export class SyncClient {
  readonly frames: Frame[] = [];
  private waiters: Array<{ pred: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const f = JSON.parse(String(d)) as Frame;
      this.frames.push(f);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(f)) return true;
        w.resolve(f);
        return false;
      });
    });
  }

  static async connect(url: string, headers: Record<string, string> = {}): Promise<SyncClient> {
    const ws = new WebSocket(url, { headers });
    const c = new SyncClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return c;
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** The first frame (already received or future) that matches. */
  next(pred: (f: Frame) => boolean, timeoutMs = 60_000, label = 'frame', from = 0): Promise<Frame> {
    const seen = this.frames.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(new Error(`timed out waiting for ${label}; got ${JSON.stringify(this.frames.slice(-10))}`)),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(t);
          resolve(f);
        },
      });
    });
  }

  /** Sends a batch and resolves with its ack or error frame. */
  async batch(seq: number, ops: unknown[]): Promise<Frame> {
    const from = this.frames.length;
    this.send({ type: 'batch', seq, ops });
    return this.next(
      (f) => this.frames.indexOf(f) >= from && (f.type === 'ack' || f.type === 'error') && f['seq'] === seq,
      60_000,
      `ack/error for seq ${seq}`,
    );
  }

  close(): void {
    this.ws.close();
  }
}

/** Polls until `fn` returns a truthy value. */
export async function until<T>(
  fn: () => Promise<T> | T,
  timeoutMs = 60_000,
  label = 'condition',
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function health(port: number): Promise<{ status: number; body: { phase?: string } }> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/__preview/health`);
    return { status: r.status, body: (await r.json()) as { phase?: string } };
  } catch {
    return { status: 0, body: {} };
  }
}
