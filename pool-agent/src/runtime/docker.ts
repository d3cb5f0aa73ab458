import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  ConfigError,
  DAEMON_PORT,
  InvalidInputError,
  TemplateName,
  TierUnavailableError,
} from '@preview/tiers';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import { type CgroupLayout, SANDBOX_CGROUP, SandboxCpuWeight, sandboxCgroup } from './cpu-weight.ts';
import { type DiskBackend, ProjectDisks } from './project-disk.ts';
import { type UpstreamMode, UpstreamPicker } from './sandbox-address.ts';
import type { ContainerRuntime, SandboxExit, SandboxInfo, SandboxSpec, SandboxState } from './types.ts';

/** Labels every preview container carries. `preview.session` is empty for a warm container. */
export const LABELS = {
  node: 'preview.node',
  session: 'preview.session',
  template: 'preview.template',
  pool: 'preview.pool',
} as const;

const ID_RE = /^[a-zA-Z0-9_.-]{1,100}$/;

export interface DockerRuntimeOptions {
  docker?: Docker;
  socketPath?: string;
  /** `preview.node` label value; only containers with it are listed, adopted or removed. */
  node: string;
  image: string;
  /** User-defined bridge network (created with inter-container traffic disabled when missing). */
  network: string;
  uid: number;
  memoryMiB: number;
  cpus: number;
  pidsLimit: number;
  tmpfsMiB: number;
  /** Paths mounted as tmpfs (the root file system is read-only). */
  tmpfsPaths?: string[];
  logMaxSize?: string;
  logMaxFile?: number;
  /** OCI runtime name (e.g. `runsc`); used only when the engine lists it, else a warning. */
  ociRuntime?: string | undefined;
  /**
   * npm cache for dependency reinstalls (after a package.json edit): `tmpfs` (default) a private cache
   * on the /tmp tmpfs, filled from the registry; `shared` a named volume at /npm-cache, filled from the
   * image's offline cache and shared by every preview (fast and offline, but writable by all previews:
   * one could plant cache entries another installs; lockfile integrity checks limit that); `image` the
   * image's cache, read-only (reinstalls fail).
   */
  npmCache?: { mode: 'tmpfs' } | { mode: 'shared'; volume: string } | { mode: 'image' };
  /**
   * Size limit of each sandbox's /project (see {@link ProjectDisks}): `sizeMiB`, the backend
   * (`auto` picks xfs, loop or tmpfs) and where loop images are made. Absent: no limit.
   */
  disk?: { sizeMiB: number; backend?: DiskBackend | 'auto'; dir: string };
  /** Extra labels (tests use them to sweep). */
  labels?: Record<string, string>;
  /**
   * How the agent reaches each sandbox's daemon port (see {@link UpstreamMode}): the container's own
   * address on the preview network, or the port published on 127.0.0.1 (through Docker's userland
   * proxy). @default 'auto' (the address when the host reaches it)
   */
  upstream?: UpstreamMode;
  /**
   * The sandboxes' shared cgroup and its CPU weight against the 1024 of every process outside it
   * (see {@link sandboxCgroup}): under contention the control plane runs first. `shares: 0` leaves
   * the sandboxes in the engine's default cgroup. @default { name: 'previews', shares: 0 }
   */
  cpuGroup?: { name?: string; shares: number };
  log?: Logger;
}

/**
 * The Docker implementation of {@link ContainerRuntime}: one hardened container per sandbox, reached
 * at the container's own address where the host can (`upstream`), else at its daemon port published
 * on 127.0.0.1 only (published until the agent knows it reaches sandboxes directly).
 *
 * @example
 * const runtime = await createDockerRuntime({ node: 'n1', image: 'preview-base:dev', network: 'preview-net', uid: 1000, memoryMiB: 512, cpus: 1, pidsLimit: 256, tmpfsMiB: 64 });
 */
export async function createDockerRuntime(options: DockerRuntimeOptions): Promise<DockerRuntime> {
  for (const key of ['node', 'image', 'network'] as const)
    if (!options[key]) throw new ConfigError('invalid_config', `createDockerRuntime: ${key} is required`);
  if (options.uid === 0) throw new ConfigError('invalid_config', 'createDockerRuntime: uid must not be 0');
  const docker = options.docker ?? new Docker({ socketPath: options.socketPath ?? '/var/run/docker.sock' });
  try {
    await docker.ping();
  } catch (e) {
    throw new TierUnavailableError(
      'tier_unavailable',
      `Docker engine not reachable: ${(e as Error).message}`,
      { tier: 'docker', cause: e },
    );
  }
  const runtime = new DockerRuntime(docker, options);
  await runtime.init();
  return runtime;
}

function stateOf(s: string | undefined): SandboxState {
  switch (s) {
    case 'created':
    case 'running':
    case 'paused':
    case 'exited':
    case 'dead':
      return s;
    case 'restarting':
      return 'running';
    default:
      return 'unknown';
  }
}

function statusCode(e: unknown): number | undefined {
  return (e as { statusCode?: number }).statusCode;
}

export class DockerRuntime implements ContainerRuntime {
  readonly kind = 'docker' as const;
  readonly isolated = true;
  readonly docker: Docker;
  #o: DockerRuntimeOptions;
  #ociRuntime: string | undefined;
  #gateway: string | undefined;
  #bridge: string | undefined;
  #subnet: string | undefined;
  #disks: ProjectDisks | undefined;
  #cpuWeight: SandboxCpuWeight | undefined;
  #listeners = new Set<(exit: SandboxExit) => void>();
  #events: NodeJS.ReadableStream | undefined;
  #closed = false;
  readonly #upstreams: UpstreamPicker;

  constructor(docker: Docker, options: DockerRuntimeOptions) {
    this.docker = docker;
    this.#o = options;
    this.#upstreams = new UpstreamPicker(options.upstream ?? 'auto', (mode) =>
      options.log?.info(
        { network: options.network, mode },
        mode === 'address'
          ? 'sandboxes reached at their own address (no userland proxy hop)'
          : "sandboxes reached through their published port (the host does not reach the network's addresses)",
      ),
    );
  }

  /** The network's gateway address: where a host service bound there is reachable from previews. */
  get gateway(): string | undefined {
    return this.#gateway;
  }

  /** How /project is sized (`none` without a `disk` option). */
  get diskBackend(): DiskBackend {
    return this.#disks?.backend ?? 'none';
  }

  get network(): {
    kind: 'gateway';
    address: string | undefined;
    name: string;
    bridge?: string;
    subnet?: string;
  } {
    return {
      kind: 'gateway',
      address: this.#gateway,
      name: this.#o.network,
      ...(this.#bridge ? { bridge: this.#bridge } : {}),
      ...(this.#subnet ? { subnet: this.#subnet } : {}),
    };
  }

  async networkInUse(): Promise<boolean> {
    try {
      const net = await this.docker.getNetwork(this.#o.network).inspect();
      return Object.keys(net.Containers ?? {}).length > 0;
    } catch (e) {
      if (statusCode(e) === 404) return false;
      throw e;
    }
  }

  async init(): Promise<void> {
    const info = (await this.docker.info()) as {
      Runtimes?: Record<string, unknown>;
      CgroupDriver?: string;
      CgroupVersion?: string;
    };
    const group = this.#o.cpuGroup;
    if (group?.shares) {
      const layout: CgroupLayout = {
        driver: info.CgroupDriver === 'systemd' ? 'systemd' : 'cgroupfs',
        version: info.CgroupVersion === '2' ? '2' : '1',
      };
      this.#cpuWeight = new SandboxCpuWeight(sandboxCgroup(layout, group.shares, group.name), this.#o.log);
    }
    if (this.#o.ociRuntime) {
      if (info.Runtimes && this.#o.ociRuntime in info.Runtimes) this.#ociRuntime = this.#o.ociRuntime;
      else
        this.#o.log?.warn(
          { runtime: this.#o.ociRuntime },
          'configured OCI runtime is not installed in the engine; using the default (runc)',
        );
    }
    if (this.#o.disk)
      this.#disks = await ProjectDisks.create({
        ...this.#o.disk,
        uid: this.#o.uid,
        docker: this.docker,
        log: this.#o.log,
      });
    this.#gateway = await this.#ensureNetwork();
    this.#watchEvents().catch((e) => this.#o.log?.warn({ err: e }, 'docker events stream failed'));
  }

  async #ensureNetwork(): Promise<string | undefined> {
    const name = this.#o.network;
    let net: Docker.NetworkInspectInfo;
    try {
      net = await this.docker.getNetwork(name).inspect();
    } catch (e) {
      if (statusCode(e) !== 404) throw e;
      try {
        await this.docker.createNetwork({
          Name: name,
          Driver: 'bridge',
          CheckDuplicate: true,
          Labels: { 'preview.network': '1' },
          Options: {
            // Previews on this bridge cannot reach each other.
            'com.docker.network.bridge.enable_icc': 'false',
          },
        });
      } catch (err) {
        if (statusCode(err) !== 409) throw err;
      }
      net = await this.docker.getNetwork(name).inspect();
    }
    if (net.Options?.['com.docker.network.bridge.enable_icc'] !== 'false')
      this.#o.log?.warn({ network: name }, 'preview network allows inter-container traffic');
    // The host interface: named by the option when set, else Docker's `br-<first 12 of the id>`.
    this.#bridge =
      net.Driver === 'bridge'
        ? (net.Options?.['com.docker.network.bridge.name'] ?? `br-${net.Id.slice(0, 12)}`)
        : undefined;
    this.#subnet = net.IPAM?.Config?.[0]?.Subnet;
    return net.IPAM?.Config?.[0]?.Gateway;
  }

  async #watchEvents(): Promise<void> {
    const stream = await this.docker.getEvents({
      filters: { type: ['container'], event: ['die', 'oom'], label: [`${LABELS.node}=${this.#o.node}`] },
    });
    this.#events = stream;
    let buf = '';
    stream.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (!line.trim()) continue;
        try {
          const ev = JSON.parse(line) as {
            id?: string;
            status?: string;
            Action?: string;
            Actor?: { ID?: string; Attributes?: Record<string, string> };
          };
          const id = ev.id ?? ev.Actor?.ID;
          if (!id) continue;
          if ((ev.Action ?? ev.status) === 'oom') this.#reportOom(id, ev.Actor?.Attributes ?? {});
          else void this.#reportExit(id).catch(() => {});
        } catch {
          /* a partial line; the next chunk completes it */
        }
      }
    });
    stream.on('error', () => {});
  }

  async #reportExit(id: string): Promise<void> {
    if (this.#listeners.size === 0) return;
    const info = await this.inspect(id);
    if (!info?.exit) return;
    const exit: SandboxExit = { id, previewId: info.previewId, ...info.exit };
    for (const l of this.#listeners) l(exit);
  }

  /** The kernel OOM-killed a process in the container (the container may live on): the preview failed. */
  #reportOom(id: string, labels: Record<string, string>): void {
    const name = labels['name'] ?? '';
    const prefix = `pv-${this.#o.node}--`;
    const previewId =
      labels[LABELS.session] || (name.startsWith(prefix) ? name.slice(prefix.length) : undefined);
    const exit: SandboxExit = {
      id,
      previewId,
      oomKilled: true,
      code: undefined,
      reason: `out of memory: a process was killed at the ${this.#o.memoryMiB} MiB limit`,
    };
    for (const l of this.#listeners) l(exit);
  }

  onExit(listener: (exit: SandboxExit) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #name(previewId?: string): string {
    if (previewId !== undefined && !ID_RE.test(previewId))
      throw new InvalidInputError('invalid_preview_id', `previewId: must match ${ID_RE} (got ${previewId})`);
    return previewId
      ? `pv-${this.#o.node}--${previewId}`
      : `pv-${this.#o.node}-w${randomBytes(6).toString('hex')}`;
  }

  async create(spec: SandboxSpec, options: { signal?: AbortSignal } = {}): Promise<SandboxInfo> {
    const o = this.#o;
    const env: Record<string, string> = {
      ...spec.env,
      PREVIEW_TEMPLATE: spec.template,
      PREVIEW_DAEMON_TOKEN: spec.daemonToken,
      PREVIEW_DAEMON_PORT: String(DAEMON_PORT),
      ...((o.npmCache?.mode ?? 'tmpfs') === 'tmpfs' ? { npm_config_cache: '/tmp/npm-cache' } : {}),
    };
    const tmpfsOpts = `rw,nosuid,nodev,size=${o.tmpfsMiB}m`;
    const tmpfs: Record<string, string> = {};
    for (const p of o.tmpfsPaths ?? ['/tmp', '/home/preview'])
      tmpfs[p] = p === '/tmp' ? `${tmpfsOpts},mode=1777` : `${tmpfsOpts},uid=${o.uid},gid=${o.uid},mode=0700`;
    const memory = o.memoryMiB * 1024 * 1024;
    const disk = this.#disks
      ? await this.#disks.prepare()
      : {
          mounts: [{ Type: 'volume' as const, Target: '/project', Source: '' }],
          tmpfs: {},
          started: async () => {},
          abandon: async () => {},
        };
    Object.assign(tmpfs, disk.tmpfs);
    let container: Docker.Container;
    try {
      container = await this.#createContainer(spec, env, tmpfs, disk.mounts, memory);
    } catch (e) {
      await disk.abandon().catch(() => {});
      throw e;
    }
    try {
      options.signal?.throwIfAborted();
      await container.start();
      await disk.started();
      if (this.#cpuWeight) await this.#cpuWeight.apply();
      const info = await this.inspect(container.id);
      if (!info) throw new Error('container vanished after start');
      return info;
    } catch (e) {
      await container.remove({ force: true, v: true }).catch(() => {});
      await disk.abandon().catch(() => {});
      throw e;
    }
  }

  #createContainer(
    spec: SandboxSpec,
    env: Record<string, string>,
    tmpfs: Record<string, string>,
    project: Docker.MountSettings[],
    memory: number,
  ): Promise<Docker.Container> {
    const o = this.#o;
    const npm = o.npmCache;
    return this.docker.createContainer({
      name: this.#name(spec.previewId),
      Image: o.image,
      User: `${o.uid}:${o.uid}`,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      ExposedPorts: { [`${DAEMON_PORT}/tcp`]: {} },
      Labels: {
        ...o.labels,
        [LABELS.node]: o.node,
        [LABELS.session]: spec.previewId ?? '',
        [LABELS.template]: spec.template,
        [LABELS.pool]: spec.pool ?? '',
      },
      StopTimeout: 2,
      HostConfig: {
        Init: true,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        ReadonlyRootfs: true,
        Tmpfs: tmpfs,
        // The only writable, persistent place: an anonymous volume (sized by the disk backend, or a
        // sized tmpfs), removed with the container.
        Mounts: [
          ...project,
          ...(npm?.mode === 'shared'
            ? [{ Type: 'volume' as const, Target: '/npm-cache', Source: npm.volume }]
            : []),
        ],
        PidsLimit: o.pidsLimit,
        Memory: memory,
        MemorySwap: memory,
        NanoCpus: Math.round(o.cpus * 1e9),
        LogConfig: {
          Type: 'json-file',
          Config: { 'max-size': o.logMaxSize ?? '1m', 'max-file': String(o.logMaxFile ?? 2) },
        },
        NetworkMode: o.network,
        // Only while the agent may need it (see UpstreamPicker.publishes).
        ...(this.#upstreams.publishes
          ? { PortBindings: { [`${DAEMON_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] } }
          : {}),
        RestartPolicy: { Name: 'no' },
        ...(this.#cpuWeight ? { CgroupParent: this.#cpuWeight.group.parent } : {}),
        ...(this.#ociRuntime ? { Runtime: this.#ociRuntime } : {}),
      },
    });
  }

  async assign(id: string, previewId: string): Promise<void> {
    await this.docker.getContainer(id).rename({ name: this.#name(previewId) });
  }

  async pause(id: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.docker.getContainer(id).pause();
        return;
      } catch (e) {
        const msg = String((e as Error).message);
        // Already paused (409 "is already paused") is fine.
        if (statusCode(e) === 409 && msg.includes('already paused')) return;
        // The freezer can fail to settle on a busy host ("unable to freeze"): runc thaws; try again.
        if (attempt < 5 && msg.includes('unable to freeze')) {
          await new Promise((r) => setTimeout(r, 100 * attempt));
          continue;
        }
        throw e;
      }
    }
  }

  async unpause(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).unpause();
    } catch (e) {
      if (statusCode(e) !== 409 || !String((e as Error).message).includes('not paused')) throw e;
    }
  }

  async remove(id: string): Promise<boolean> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
      return true;
    } catch (e) {
      const code = statusCode(e);
      // 404: gone; 409: removal already in progress.
      if (code === 404 || code === 409) return false;
      throw e;
    }
  }

  async inspect(id: string): Promise<SandboxInfo | undefined> {
    let c: Docker.ContainerInspectInfo;
    try {
      c = await this.docker.getContainer(id).inspect();
    } catch (e) {
      if (statusCode(e) === 404) return undefined;
      throw e;
    }
    const labels = c.Config.Labels ?? {};
    if (labels[LABELS.node] !== this.#o.node) return undefined;
    const env = new Map(
      (c.Config.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
    );
    const binding = c.NetworkSettings.Ports?.[`${DAEMON_PORT}/tcp`]?.[0];
    const address = c.NetworkSettings.Networks?.[this.#o.network]?.IPAddress || undefined;
    const name = c.Name.replace(/^\//, '');
    const prefix = `pv-${this.#o.node}--`;
    const previewId =
      labels[LABELS.session] || (name.startsWith(prefix) ? name.slice(prefix.length) : undefined);
    const template = TemplateName.safeParse(labels[LABELS.template]);
    const state = c.State.Paused ? 'paused' : stateOf(c.State.Status);
    const info: SandboxInfo = {
      id: c.Id,
      template: template.success ? template.data : 'vite-vanilla',
      previewId,
      pool: labels[LABELS.pool] || undefined,
      state,
      upstream: await this.#upstreams.upstream({
        address,
        port: DAEMON_PORT,
        published: binding ? `http://127.0.0.1:${binding.HostPort}` : '',
        running: state === 'running',
      }),
      daemonToken: env.get('PREVIEW_DAEMON_TOKEN') ?? '',
    };
    if (state === 'exited' || state === 'dead') {
      const oom = c.State.OOMKilled === true;
      const code = c.State.ExitCode;
      info.exit = {
        code,
        oomKilled: oom,
        reason: oom
          ? `out of memory: killed at the ${this.#o.memoryMiB} MiB limit`
          : `exited with code ${code}${c.State.Error ? `: ${c.State.Error}` : ''}`,
      };
    }
    return info;
  }

  async list(): Promise<SandboxInfo[]> {
    const rows = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.node}=${this.#o.node}`] },
    });
    const out = await Promise.all(rows.map((r) => this.inspect(r.Id)));
    return out.filter((x): x is SandboxInfo => x !== undefined);
  }

  /**
   * Working-set memory from the cgroup files (what `docker stats` shows: usage minus inactive file
   * cache). Reading the files takes microseconds; the stats API takes a second.
   */
  async memoryBytes(id: string): Promise<number | undefined> {
    return await containerMemoryBytes(this.docker, id, this.#o.cpuGroup?.name);
  }

  async logs(id: string, options: { tail?: number } = {}): Promise<string[]> {
    let buf: Buffer;
    try {
      buf = (await this.docker
        .getContainer(id)
        .logs({ stdout: true, stderr: true, tail: options.tail ?? 200, follow: false })) as unknown as Buffer;
    } catch (e) {
      if (statusCode(e) === 404) return [];
      throw e;
    }
    // Non-TTY logs are multiplexed: 8-byte header (stream, 0, 0, 0, size BE32) per frame.
    const parts: string[] = [];
    let i = 0;
    while (i + 8 <= buf.length) {
      const size = buf.readUInt32BE(i + 4);
      parts.push(buf.subarray(i + 8, i + 8 + size).toString('utf8'));
      i += 8 + size;
    }
    return parts
      .join('')
      .split('\n')
      .filter((l) => l.length > 0);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    const s = this.#events as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    s?.destroy?.();
  }
}

/**
 * A container's memory as `docker stats` shows it, in bytes: its cgroup's usage minus inactive file
 * cache. Looked for under the sandboxes' group `group` and the engine's default parent (see
 * {@link sandboxCgroup}): cgroup v1 `memory/<parent>/<id>`, v2 `<parent>/<id>` (cgroupfs driver) or
 * `<parent>/docker-<id>.scope` (systemd driver). `id` may be short (then the engine is asked for the
 * full one). Undefined when no cgroup is found (the container is gone, or another layout).
 * @param group the sandboxes' cgroup name @default SANDBOX_CGROUP
 */
export async function containerMemoryBytes(
  docker: Docker,
  id: string,
  group = SANDBOX_CGROUP,
): Promise<number | undefined> {
  const full = id.length === 64 ? id : (await docker.getContainer(id).inspect()).Id;
  // [directory, usage file, memory.stat key of the inactive file cache]: v1 first, then v2.
  const places: Array<[string, string, string]> = [
    ...[group, 'docker'].map((parent): [string, string, string] => [
      `/sys/fs/cgroup/memory/${parent}/${full}`,
      'memory.usage_in_bytes',
      'total_inactive_file',
    ]),
    ...[
      `${group}.slice/docker-${full}.scope`,
      `${group}/${full}`,
      `system.slice/docker-${full}.scope`,
      `docker/${full}`,
    ].map((dir): [string, string, string] => [`/sys/fs/cgroup/${dir}`, 'memory.current', 'inactive_file']),
  ];
  for (const [dir, usageFile, inactiveKey] of places)
    try {
      const usage = Number((await readFile(`${dir}/${usageFile}`, 'utf8')).trim());
      const stat = await readFile(`${dir}/memory.stat`, 'utf8');
      const inactive = Number(new RegExp(`^${inactiveKey} (\\d+)$`, 'm').exec(stat)?.[1] ?? 0);
      return usage - inactive;
    } catch {
      /* not this layout: the next */
    }
  return undefined;
}
