/**
 * The project directory's size limit in real preview containers (PREVIEW_IMAGE or preview-base:dev;
 * the status part needs a daemon that reports a full disk). App code writes past the quota, gets
 * ENOSPC, the daemon's status says the project is full, and the host's free space did not drop by
 * more than the quota. Needs the Docker engine; the loop backend needs root.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { createDockerRuntime, type DockerRuntime } from './docker.ts';

const run = promisify(execFile);
const QUOTA_MIB = 64;
const MiB = 1024 * 1024;
const docker = testDocker();
const dir = mkdtempSync(join(tmpdir(), 'preview-disks-'));
const free = () => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

/** Writes 1 MiB chunks to /project/fill until a write fails; prints the error code and bytes written. */
const FILL = `const fs=require('fs');const b=Buffer.alloc(1<<20,120);let n=0;const fd=fs.openSync('/project/fill','w');
try{for(;;){n+=fs.writeSync(fd,b);if(n>${4 * QUOTA_MIB}*1048576)break}console.log(JSON.stringify({code:'none',n}))}
catch(e){console.log(JSON.stringify({code:e.code,n}))}`;

describe.each(['loop', 'tmpfs'] as const)('project disk quota (%s)', (backend) => {
  const network = `disk-t-${randomBytes(3).toString('hex')}`;
  let rt: DockerRuntime;

  afterAll(async () => {
    if (rt) {
      for (const box of await rt.list()) await rt.remove(box.id);
      await rt.close();
    }
    await docker
      .getNetwork(network)
      .remove()
      .catch(() => {});
  }, 60_000);

  it(`filling /project stops at the quota with ENOSPC, the status says so, the host keeps its space`, async () => {
    rt = await createDockerRuntime({
      docker,
      node: `dq-${randomBytes(3).toString('hex')}`,
      image: TEST_PREVIEW_IMAGE,
      network,
      uid: 1000,
      memoryMiB: 384,
      cpus: 1,
      pidsLimit: 128,
      tmpfsMiB: 32,
      labels: { [TEST_LABEL]: '1' },
      disk: { sizeMiB: QUOTA_MIB, backend, dir },
    });
    expect(rt.diskBackend).toBe(backend);
    const token = randomBytes(16).toString('hex');
    const box = await rt.create({ template: 'vite-vanilla', daemonToken: token });
    const info = await docker.getContainer(box.id).inspect();
    const volume = info.Mounts.find((m) => m.Destination === '/project');

    const before = free();
    const { stdout } = await run('docker', ['exec', box.id, 'node', '-e', FILL]);
    const after = free();
    const r = JSON.parse(stdout.trim()) as { code: string; n: number };
    expect(r.code).toBe('ENOSPC');
    expect(r.n).toBeGreaterThan((QUOTA_MIB / 2) * MiB);
    expect(r.n).toBeLessThanOrEqual(QUOTA_MIB * MiB);
    // Other processes on this machine write too: allow them 64 MiB beside the quota.
    expect(before - after).toBeLessThan((QUOTA_MIB + 64) * MiB);

    // The daemon reports the full project directory.
    // The daemon answers once it listens (create returns when its process runs).
    for (let i = 0; i < 300; i++) {
      const h = await fetch(`${box.upstream}/__preview/health`).catch(() => undefined);
      await h?.body?.cancel();
      if (h) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const res = await fetch(`${box.upstream}/__preview/status`, {
      headers: { authorization: `Bearer ${token}` },
    }).catch(async (e: Error) => {
      const inspect = await docker.getContainer(box.id).inspect();
      throw new Error(
        `status: ${e.message}; ${JSON.stringify(inspect.State)}\n${(await rt.logs(box.id)).join('\n')}`,
      );
    });
    const status = (await res.json()) as {
      phase: string;
      message?: string;
      disk?: { totalBytes: number; freeBytes: number };
    };
    expect(status.phase).toBe('error');
    expect(status.message).toMatch(/project directory is full.*ENOSPC/);
    expect(status.disk?.totalBytes).toBeLessThanOrEqual(QUOTA_MIB * MiB);

    // Removing the sandbox frees everything: its volume (and loop device) are gone.
    expect(await rt.remove(box.id)).toBe(true);
    if (backend === 'loop') {
      expect(volume?.Type).toBe('volume');
      await expect(docker.getVolume(volume!.Name!).inspect()).rejects.toMatchObject({ statusCode: 404 });
      const { stdout: loops } = await run('losetup', [
        '--list',
        '--noheadings',
        '--output',
        'NAME,BACK-FILE',
      ]);
      expect(loops).not.toContain(dir);
    }
  }, 120_000);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));
