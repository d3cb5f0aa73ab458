import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { InvalidInputError, TierUnavailableError } from '@preview/tiers';
import type Docker from 'dockerode';
import type { Logger } from 'pino';

const exec = promisify(execFile);

/**
 * How a sandbox's /project gets its size limit: `xfs` a volume with the local driver's `size`
 * (XFS project quota: the engine's volumes on xfs mounted with pquota), `loop` a volume on an ext4
 * image of its own (a sparse file on a loop device), `tmpfs` a tmpfs of that size (in memory,
 * charged to the container's memory limit), `none` no limit.
 */
export type DiskBackend = 'xfs' | 'loop' | 'tmpfs' | 'none';

export interface ProjectDiskOptions {
  /** `PREVIEW_DISK_MB`: the size limit of /project in MiB. */
  sizeMiB: number;
  /** `PREVIEW_DISK_BACKEND`; `auto` is the first of xfs, loop, tmpfs that works here. @default 'auto' */
  backend?: DiskBackend | 'auto';
  /** Owner of /project (the sandbox user). */
  uid: number;
  /** `PREVIEW_DISK_DIR`: where loop images are made (each is unlinked once attached). */
  dir: string;
  docker: Docker;
  log?: Logger | undefined;
}

/** One sandbox's /project, before its container starts. */
export interface PreparedDisk {
  /** Mounts for the container's HostConfig (the /project volume). */
  mounts: Docker.MountSettings[];
  /** Tmpfs entries for HostConfig.Tmpfs (the tmpfs backend). */
  tmpfs: Record<string, string>;
  /** Call once the container started (its volume is mounted). */
  started(): Promise<void>;
  /** Call when the container will not start: frees what was made. */
  abandon(): Promise<void>;
}

/**
 * Sizes each sandbox's project directory, so app code cannot fill the host's disk: writes past the
 * limit fail with ENOSPC inside the sandbox (the daemon's status then says the project is full).
 * A loop image is a sparse file, unlinked as soon as its loop device holds it and detached
 * (autoclear) once mounted, so it disappears with the container's volume: nothing to sweep.
 *
 * @example
 * const disks = await ProjectDisks.create({ sizeMiB: 512, uid: 1000, dir: '/var/lib/preview-agent/disks', docker });
 * const disk = await disks.prepare(); // HostConfig.Mounts = disk.mounts; …; await disk.started();
 */
export class ProjectDisks {
  readonly backend: DiskBackend;
  readonly #o: ProjectDiskOptions;

  private constructor(o: ProjectDiskOptions, backend: DiskBackend) {
    this.#o = o;
    this.backend = backend;
  }

  /**
   * Resolves the backend (`auto`: xfs when the engine accepts a volume `size`, else loop when this
   * process can make loop devices, else tmpfs).
   *
   * @throws InvalidInputError (`invalid_config`) for a size below 16 MiB.
   * @throws TierUnavailableError when a named backend cannot work here.
   */
  static async create(o: ProjectDiskOptions): Promise<ProjectDisks> {
    if (!Number.isInteger(o.sizeMiB) || o.sizeMiB < 16)
      throw new InvalidInputError(
        'invalid_config',
        `PREVIEW_DISK_MB: must be an integer ≥ 16 (got ${o.sizeMiB})`,
      );
    const want = o.backend ?? 'auto';
    if (want === 'none' || want === 'tmpfs') return new ProjectDisks(o, want);
    if (want === 'xfs' || want === 'auto') {
      const why = await xfsUnsupported(o.docker);
      if (!why) return new ProjectDisks(o, 'xfs');
      if (want === 'xfs')
        throw new TierUnavailableError('tier_unavailable', `PREVIEW_DISK_BACKEND=xfs: ${why}`, {
          tier: 'docker',
        });
    }
    const why = await loopUnsupported(o.dir);
    if (!why) return new ProjectDisks(o, 'loop');
    if (want === 'loop')
      throw new TierUnavailableError('tier_unavailable', `PREVIEW_DISK_BACKEND=loop: ${why}`, {
        tier: 'docker',
      });
    o.log?.warn({ reason: why }, 'project disks on tmpfs (counted in each preview’s memory)');
    return new ProjectDisks(o, 'tmpfs');
  }

  /** Makes what one sandbox's /project needs. */
  async prepare(): Promise<PreparedDisk> {
    const { sizeMiB, uid } = this.#o;
    const nothing = async () => {};
    const plain: Docker.MountSettings = { Type: 'volume', Target: '/project', Source: '' };
    switch (this.backend) {
      case 'none':
        return { mounts: [plain], tmpfs: {}, started: nothing, abandon: nothing };
      case 'tmpfs':
        return {
          mounts: [],
          tmpfs: { '/project': `rw,nosuid,nodev,size=${sizeMiB}m,uid=${uid},gid=${uid},mode=0755` },
          started: nothing,
          abandon: nothing,
        };
      case 'xfs':
        return {
          mounts: [
            {
              ...plain,
              VolumeOptions: {
                NoCopy: false,
                Labels: {},
                DriverConfig: { Name: 'local', Options: { size: `${sizeMiB}m` } },
              },
            },
          ],
          tmpfs: {},
          started: nothing,
          abandon: nothing,
        };
      case 'loop': {
        const device = await makeLoopDisk(this.#o.dir, sizeMiB, uid);
        const detach = () => exec('losetup', ['-d', device]).then(() => {});
        return {
          mounts: [
            {
              ...plain,
              VolumeOptions: {
                NoCopy: false,
                Labels: {},
                // noinit_itable: the image is a new sparse file (unwritten blocks read as zeros), so
                // the kernel's background zeroing of inode tables (ext4lazyinit) is pure I/O load.
                DriverConfig: {
                  Name: 'local',
                  Options: { type: 'ext4', device, o: 'nosuid,nodev,noinit_itable' },
                },
              },
            },
          ],
          tmpfs: {},
          // Mounted now: detaching sets autoclear, so the device (and the unlinked image) go with the mount.
          started: detach,
          abandon: detach,
        };
      }
    }
  }
}

/** Why the engine cannot size a volume (no XFS project quota), or undefined when it can. */
async function xfsUnsupported(docker: Docker): Promise<string | undefined> {
  const name = `preview-disk-probe-${randomBytes(4).toString('hex')}`;
  try {
    await docker.createVolume({ Name: name, Driver: 'local', DriverOpts: { size: '16m' } });
    await docker.getVolume(name).remove();
    return undefined;
  } catch (e) {
    return `the engine cannot size volumes: ${(e as Error).message.replace(/^.*?: /, '')}`;
  }
}

/** Why loop-mounted images cannot be made here, or undefined when they can. */
async function loopUnsupported(dir: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'loop devices need root';
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control';
  for (const tool of ['losetup', 'mkfs.ext4', 'debugfs'])
    try {
      await exec(tool, ['-V']);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        return `${tool} is not installed (util-linux, e2fsprogs)`;
    }
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    return `PREVIEW_DISK_DIR ${dir}: ${(e as Error).message}`;
  }
  return undefined;
}

/**
 * A sparse ext4 image of `sizeMiB` owned by `uid`, with no reserved blocks and no lost+found (an
 * empty root, as the daemon expects), attached to a free loop device and unlinked. Returns the device.
 */
async function makeLoopDisk(dir: string, sizeMiB: number, uid: number): Promise<string> {
  const file = join(dir, `project-${randomBytes(8).toString('hex')}.img`);
  try {
    await exec('truncate', ['-s', `${sizeMiB}M`, file]);
    await exec('mkfs.ext4', [
      '-q',
      '-F',
      '-m',
      '0',
      '-E',
      `root_owner=${uid}:${uid},lazy_itable_init=1,lazy_journal_init=1`,
      file,
    ]);
    await exec('debugfs', ['-w', '-R', 'rmdir lost+found', file]);
    const { stdout } = await exec('losetup', ['--find', '--show', file]);
    return stdout.trim();
  } finally {
    await unlink(file).catch(() => {});
  }
}
