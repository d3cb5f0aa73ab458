import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { ConfigError, NotFoundError, PreviewError } from '@preview/tiers';
import type { Logger } from 'pino';
import type { ContainerRuntime, SandboxExit, SandboxInfo, SandboxSpec } from './types.ts';

export interface ProcessRuntimeOptions {
  /** Path of the daemon bundle (`docker/preview-daemon/dist/daemon.mjs`). */
  daemonBundle: string;
  /** Installed templates (`<dir>/<template>` with node_modules): the daemon seeds each project from it. */
  templatesDir?: string | undefined;
  /** Where project dirs are made (default: the OS temp dir). */
  workDir?: string | undefined;
  /** `auto`: bwrap when installed; `bwrap`: required; `none`: plain host processes (not isolated). */
  sandbox?: 'auto' | 'bwrap' | 'none';
  uid?: number;
  /** Node binary to run the daemon with (default: this process's). */
  nodePath?: string;
  log?: Logger;
}

interface Box {
  info: SandboxInfo;
  child: ChildProcess;
  dir: string;
  lines: string[];
  exited: Promise<void>;
  removing: boolean;
}

/** The port of the daemon's `listening` log line (JSON lines: `{"msg":"listening","port":…}`), if `line` is it. */
export function listeningPort(line: string): number | undefined {
  if (!line.startsWith('{') || !line.includes('"listening"')) return undefined;
  try {
    const entry = JSON.parse(line) as { msg?: unknown; port?: unknown };
    return entry.msg === 'listening' && typeof entry.port === 'number' ? entry.port : undefined;
  } catch {
    return undefined;
  }
}

function hasBwrap(): boolean {
  return spawnSync('bwrap', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * The host-process implementation of {@link ContainerRuntime}: the preview-daemon bundle as a child
 * process with its own project dir. With bubblewrap it runs in fresh namespaces (no capabilities,
 * uid 1000, read-only system dirs, only the project dir writable, the host network shared); without
 * it the sandbox is NOT isolated and the runtime says so in its log.
 *
 * @example
 * const runtime = createProcessRuntime({ daemonBundle: 'docker/preview-daemon/dist/daemon.mjs' });
 */
export function createProcessRuntime(options: ProcessRuntimeOptions): ProcessRuntime {
  if (!options.daemonBundle)
    throw new ConfigError('invalid_config', 'createProcessRuntime: daemonBundle is required');
  const mode = options.sandbox ?? 'auto';
  const bwrap = mode !== 'none' && hasBwrap();
  if (mode === 'bwrap' && !bwrap)
    throw new ConfigError(
      'invalid_config',
      'createProcessRuntime: sandbox "bwrap" requested but bwrap is not installed',
    );
  if (!bwrap)
    options.log?.warn(
      'host-process runtime WITHOUT isolation: previews run as plain processes of this user and can read the host file system (install bubblewrap to sandbox them)',
    );
  return new ProcessRuntime(options, bwrap);
}

export class ProcessRuntime implements ContainerRuntime {
  readonly kind = 'process' as const;
  readonly isolated: boolean;
  /** bwrap shares the host's network (`--share-net`), and so do plain processes. */
  readonly network = { kind: 'host' } as const;
  #o: ProcessRuntimeOptions;
  #boxes = new Map<string, Box>();
  #listeners = new Set<(exit: SandboxExit) => void>();

  constructor(options: ProcessRuntimeOptions, bwrap: boolean) {
    this.#o = options;
    this.isolated = bwrap;
  }

  async create(spec: SandboxSpec): Promise<SandboxInfo> {
    const base = this.#o.workDir ?? tmpdir();
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(join(base, 'preview-'));
    const project = join(dir, 'project');
    const home = join(dir, 'home');
    await mkdir(project);
    await mkdir(home);
    // The daemon seeds the empty project dir from `<templatesDir>/<template>` (linking node_modules).
    const tpl = this.#o.templatesDir;
    // bwrap maps our own uid to `uid` inside its user namespace, so the dirs stay ours.
    const uid = this.#o.uid ?? 1000;
    const node = this.#o.nodePath ?? process.execPath;
    const bundleDir = dirname(this.#o.daemonBundle);
    const env: Record<string, string> = {
      PATH: `${dirname(node)}:/usr/local/bin:/usr/bin:/bin`,
      NODE_ENV: 'development',
      ...spec.env,
      ...(tpl ? { PREVIEW_TEMPLATES_DIR: tpl } : {}),
      PREVIEW_TEMPLATE: spec.template,
      PREVIEW_DAEMON_TOKEN: spec.daemonToken,
      // Any free port: the daemon says which in its `listening` log line.
      PREVIEW_DAEMON_PORT: '0',
      // The host network is shared: keep the daemon off other interfaces.
      PREVIEW_DAEMON_HOST: '127.0.0.1',
    };
    let cmd: string;
    let args: string[];
    if (this.isolated) {
      const ro = (p: string) => (existsSync(p) ? ['--ro-bind', p, p] : []);
      cmd = 'bwrap';
      args = [
        '--unshare-all',
        '--share-net',
        '--die-with-parent',
        '--cap-drop',
        'ALL',
        '--uid',
        String(uid),
        '--gid',
        String(uid),
        // The fresh /tmp first: binds below come after it, so a checkout under /tmp stays visible.
        '--tmpfs',
        '/tmp',
        ...ro('/usr'),
        ...ro('/bin'),
        ...ro('/lib'),
        ...ro('/lib64'),
        ...ro('/etc/ssl'),
        ...ro('/etc/resolv.conf'),
        ...ro('/etc/hosts'),
        ...ro(dirname(node)),
        ...ro(bundleDir),
        ...(tpl ? ro(tpl) : []),
        '--proc',
        '/proc',
        '--dev',
        '/dev',
        '--bind',
        project,
        '/project',
        '--bind',
        home,
        '/home/preview',
        '--chdir',
        '/project',
        '--setenv',
        'HOME',
        '/home/preview',
        '--setenv',
        'PREVIEW_PROJECT_DIR',
        '/project',
        '--setenv',
        'PREVIEW_CACHE_DIR',
        '/tmp/preview-cache',
        node,
        this.#o.daemonBundle,
      ];
      // The project's node_modules link points at the template dir, which is bound at the same path.
    } else {
      cmd = node;
      args = [this.#o.daemonBundle];
      env['HOME'] = home;
      env['PREVIEW_PROJECT_DIR'] = project;
      env['PREVIEW_CACHE_DIR'] = join(dir, 'cache');
    }
    const child = spawn(cmd, args, {
      cwd: project,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so pause/remove reach the whole tree.
      detached: true,
    });
    const id = `proc-${randomBytes(6).toString('hex')}`;
    const lines: string[] = [];
    const listening = new Promise<number | undefined>((resolve) => {
      const push = (line: string) => {
        if (!line) return;
        lines.push(line);
        if (lines.length > 500) lines.splice(0, lines.length - 500);
        const port = listeningPort(line);
        if (port !== undefined) resolve(port);
      };
      if (child.stdout) createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', push);
      if (child.stderr) createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', push);
      // After 'close' every line of output has been read: no listening line will come.
      child.once('close', () => resolve(undefined));
      child.once('error', () => resolve(undefined));
    });
    const info: SandboxInfo = {
      id,
      template: spec.template,
      previewId: spec.previewId,
      pool: spec.pool,
      state: 'running',
      upstream: '',
      daemonToken: spec.daemonToken,
    };
    const box: Box = {
      info,
      child,
      dir,
      lines,
      removing: false,
      exited: new Promise((resolve) => {
        child.once('exit', (code, signal) => {
          info.state = 'exited';
          info.exit = {
            code: code ?? undefined,
            oomKilled: false,
            reason: signal ? `killed by ${signal}` : `exited with code ${code}`,
          };
          if (!box.removing)
            for (const l of this.#listeners) l({ id, previewId: info.previewId, ...info.exit });
          resolve();
        });
        child.once('error', (e) => {
          lines.push(`spawn failed: ${e.message}`);
          resolve();
        });
      }),
    };
    this.#boxes.set(id, box);
    const port = await listening;
    if (port === undefined) {
      await this.remove(id);
      throw new PreviewError(
        'sandbox_failed',
        `the preview daemon exited before it listened: ${lines.slice(-20).join('\n') || '(no output)'}`,
      );
    }
    info.upstream = `http://127.0.0.1:${port}`;
    return { ...info };
  }

  #get(id: string): Box {
    const b = this.#boxes.get(id);
    if (!b) throw new NotFoundError('not_found', `no sandbox ${id}`);
    return b;
  }

  /** The host pid of the sandbox's top process (bwrap or the daemon). */
  pidOf(id: string): number | undefined {
    return this.#boxes.get(id)?.child.pid;
  }

  async assign(id: string, previewId: string): Promise<void> {
    this.#get(id).info.previewId = previewId;
  }

  async pause(id: string): Promise<void> {
    const b = this.#get(id);
    // Under bwrap the daemon is a grandchild; signal the whole process group.
    if (b.child.pid) process.kill(-b.child.pid, 'SIGSTOP');
    b.info.state = 'paused';
  }

  async unpause(id: string): Promise<void> {
    const b = this.#get(id);
    if (b.child.pid) process.kill(-b.child.pid, 'SIGCONT');
    b.info.state = 'running';
  }

  async remove(id: string): Promise<boolean> {
    const b = this.#boxes.get(id);
    if (!b) return false;
    this.#boxes.delete(id);
    b.removing = true;
    if (b.info.state !== 'exited') {
      try {
        if (b.child.pid) process.kill(-b.child.pid, 'SIGCONT');
      } catch {
        /* gone */
      }
      b.child.kill('SIGTERM');
      const t = setTimeout(() => b.child.kill('SIGKILL'), 2000);
      await b.exited;
      clearTimeout(t);
    }
    await rm(b.dir, { recursive: true, force: true });
    return true;
  }

  async inspect(id: string): Promise<SandboxInfo | undefined> {
    const b = this.#boxes.get(id);
    return b ? { ...b.info } : undefined;
  }

  async list(): Promise<SandboxInfo[]> {
    return [...this.#boxes.values()].map((b) => ({ ...b.info }));
  }

  /** Resident memory of the daemon's process tree (from /proc). */
  async memoryBytes(id: string): Promise<number | undefined> {
    const b = this.#boxes.get(id);
    if (!b?.child.pid) return undefined;
    let total = 0;
    const pids = [b.child.pid, ...(await descendants(b.child.pid))];
    for (const pid of pids)
      try {
        const status = await readFile(`/proc/${pid}/status`, 'utf8');
        total += Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
      } catch {
        /* exited */
      }
    return total;
  }

  async logs(id: string, options: { tail?: number } = {}): Promise<string[]> {
    const b = this.#boxes.get(id);
    return b ? b.lines.slice(-(options.tail ?? 200)) : [];
  }

  onExit(listener: (exit: SandboxExit) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}

async function descendants(pid: number): Promise<number[]> {
  const out: number[] = [];
  try {
    const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8'))
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    for (const k of kids) {
      const n = Number(k);
      out.push(n, ...(await descendants(n)));
    }
  } catch {
    /* gone */
  }
  return out;
}
