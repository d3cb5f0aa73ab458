import { writeFile } from 'node:fs/promises';
import { ConfigError } from '@preview/tiers';
import type { Logger } from 'pino';

/** Name of the cgroup every sandbox on a node runs in (`/previews`, or `previews.slice` under systemd). */
export const SANDBOX_CGROUP = 'previews';

/** cgroup v1 `cpu.shares` of a group the kernel makes with no setting (what every process gets). */
export const DEFAULT_CPU_SHARES = 1024;

/** How the engine makes containers' cgroups (`docker info`: CgroupDriver, CgroupVersion). */
export interface CgroupLayout {
  driver: 'cgroupfs' | 'systemd';
  version: '1' | '2';
}

/** Where a sandbox group lives and what its weight file holds. */
export interface SandboxCgroup {
  /** HostConfig.CgroupParent: `/previews` (cgroupfs) or `previews.slice` (systemd). */
  parent: string;
  /** The group's weight file on the host: v1 `cpu/<group>/cpu.shares`, v2 `<group>/cpu.weight`. */
  file: string;
  /** What the file gets: the shares (v1), or the same proportion of v2's default weight 100. */
  value: string;
}

/** What a sandbox group's name may be: a dash would nest a systemd slice, a slash a cgroup. */
export const SANDBOX_CGROUP_RE = /^[a-z0-9_]{1,64}$/;

/**
 * The cgroup all of a node's sandboxes share, and the CPU weight it gets: `shares` against the
 * 1024 of every process outside it (cgroup v1 `cpu.shares`; v2 `cpu.weight` is the same proportion
 * of its default 100, at least 1). Under CPU contention the kernel's fair scheduler gives the
 * sandboxes together that weight, so the router, the agents, Postgres and Redis run first and the
 * API answers in time while sandboxes boot (kernel docs: scheduler/sched-design-CFS "group
 * scheduler extensions", admin-guide/cgroup-v2 "cpu.weight").
 *
 * Under the systemd driver the parent must be a slice, and a dash in a slice's name nests it
 * (`a-b.slice` lives in `a.slice`), hence names of `[a-z0-9_]` only.
 *
 * @param name the group's name @default SANDBOX_CGROUP
 * @param root where the cgroup file systems are mounted @default '/sys/fs/cgroup'
 * @throws ConfigError `invalid_config` for a name outside `[a-z0-9_]{1,64}` or shares outside 2..262144
 * @example
 * sandboxCgroup({ driver: 'cgroupfs', version: '1' }, 128);
 * // { parent: '/previews', file: '/sys/fs/cgroup/cpu/previews/cpu.shares', value: '128' }
 */
export function sandboxCgroup(
  layout: CgroupLayout,
  shares: number,
  name = SANDBOX_CGROUP,
  root = '/sys/fs/cgroup',
): SandboxCgroup {
  if (!SANDBOX_CGROUP_RE.test(name))
    throw new ConfigError('invalid_config', `SANDBOX_CGROUP: must match ${SANDBOX_CGROUP_RE} (got ${name})`);
  if (!Number.isInteger(shares) || shares < 2 || shares > 262_144)
    throw new ConfigError(
      'invalid_config',
      `SANDBOX_CPU_SHARES: an integer from 2 to 262144 (got ${shares})`,
    );
  const dir = layout.driver === 'systemd' ? `${name}.slice` : name;
  const parent = layout.driver === 'systemd' ? dir : `/${dir}`;
  if (layout.version === '1') return { parent, file: `${root}/cpu/${dir}/cpu.shares`, value: String(shares) };
  const weight = Math.min(10_000, Math.max(1, Math.round((shares * 100) / DEFAULT_CPU_SHARES)));
  return { parent, file: `${root}/${dir}/cpu.weight`, value: String(weight) };
}

/**
 * Sets the sandbox group's CPU weight once the engine has made the group (after the first sandbox
 * in it started; the engine makes a parent group on demand and never gives it a weight). Applied
 * once per agent; concurrent calls share the write. When the file cannot be written (the agent is
 * not root on the host, or runs in a container without the host's cgroup file system) the
 * sandboxes keep the engine's default weight and a warning says what to set on the host.
 *
 * @example
 * const weight = new SandboxCpuWeight(sandboxCgroup(layout, 128), log);
 * await container.start(); await weight.apply();
 */
export class SandboxCpuWeight {
  readonly group: SandboxCgroup;
  readonly #log: Logger | undefined;
  readonly #write: (file: string, value: string) => Promise<void>;
  #applied: Promise<boolean> | undefined;

  /** @param write how the weight file is written @default fs.writeFile */
  constructor(
    group: SandboxCgroup,
    log?: Logger,
    write: (file: string, value: string) => Promise<void> = (f, v) => writeFile(f, v),
  ) {
    this.group = group;
    this.#log = log;
    this.#write = write;
  }

  /** Writes the weight (the first call; later calls get its outcome): `true` when it was set. */
  apply(): Promise<boolean> {
    this.#applied ??= this.#write(this.group.file, this.group.value).then(
      () => {
        this.#log?.info(
          { cgroup: this.group.parent, file: this.group.file, value: this.group.value },
          'sandboxes run in their own cgroup at a lower CPU weight than the control plane',
        );
        return true;
      },
      (e: NodeJS.ErrnoException) => {
        this.#log?.warn(
          { cgroup: this.group.parent, file: this.group.file, value: this.group.value, code: e.code },
          `could not set the sandboxes' CPU weight: they compete with the router and agents at equal weight; write ${this.group.value} to ${this.group.file} on the host`,
        );
        return false;
      },
    );
    return this.#applied;
  }
}
