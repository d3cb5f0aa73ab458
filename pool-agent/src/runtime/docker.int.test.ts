import { readdirSync, readFileSync } from 'node:fs';
import { rmdir } from 'node:fs/promises';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { DAEMON_PORT } from '@preview/tiers';
import { afterAll, describe, expect, it } from 'vitest';
import { waitReady } from '../daemon-client.ts';
import { newDaemonToken } from '../pool.ts';
import { runRuntimeContract } from './contract.case.test.ts';
import { createDockerRuntime, type DockerRuntime } from './docker.ts';

export const dockerOptions = (node: string) => ({
  docker: testDocker(),
  node,
  image: TEST_PREVIEW_IMAGE,
  network: 'preview-net-test',
  uid: 1000,
  memoryMiB: 256,
  cpus: 1,
  pidsLimit: 128,
  tmpfsMiB: 32,
  labels: { [TEST_LABEL]: '1' },
});

runRuntimeContract({
  name: 'docker',
  create: () => createDockerRuntime(dockerOptions(`t-${Math.random().toString(16).slice(2, 10)}`)),
});

describe('docker runtime: where the agent reaches a sandbox', () => {
  const made: Array<{ runtime: DockerRuntime; id: string }> = [];
  afterAll(async () => {
    for (const m of made) {
      await m.runtime.remove(m.id).catch(() => {});
      await m.runtime.close();
    }
  });
  const node = () => `t-${Math.random().toString(16).slice(2, 10)}`;
  const ipOf = async (runtime: DockerRuntime, id: string) =>
    (await runtime.docker.getContainer(id).inspect()).NetworkSettings.Networks?.['preview-net-test']
      ?.IPAddress;

  // Through the published port every request, HMR message and sync frame also crosses Docker's
  // userland proxy (docker-proxy), a process of its own.
  it('at its own address on the preview network when the host reaches it (no userland proxy hop)', async () => {
    const runtime = await createDockerRuntime(dockerOptions(node()));
    const box = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
    made.push({ runtime, id: box.id });
    const ip = await ipOf(runtime, box.id);
    expect(ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(box.upstream).toBe(`http://${ip}:${DAEMON_PORT}`);
    await waitReady(box.upstream, { timeoutMs: 60_000 });
    expect((await runtime.inspect(box.id))?.upstream).toBe(box.upstream);
    // Reached directly: later sandboxes publish no port (no docker-proxy, no NAT rules).
    const next = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
    made.push({ runtime, id: next.id });
    const { HostConfig, NetworkSettings } = await runtime.docker.getContainer(next.id).inspect();
    expect(HostConfig.PortBindings ?? {}).toEqual({});
    expect(NetworkSettings.Ports?.[`${DAEMON_PORT}/tcp`] ?? null).toBeNull();
    expect(next.upstream).toBe(`http://${await ipOf(runtime, next.id)}:${DAEMON_PORT}`);
    await waitReady(next.upstream, { timeoutMs: 60_000 });
  }, 120_000);

  it('at the port published on 127.0.0.1 when configured so (engines whose bridge the host cannot reach)', async () => {
    const runtime = await createDockerRuntime({ ...dockerOptions(node()), upstream: 'published' });
    const box = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
    made.push({ runtime, id: box.id });
    expect(box.upstream).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await waitReady(box.upstream, { timeoutMs: 60_000 });
    const again = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
    made.push({ runtime, id: again.id });
    expect(again.upstream).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  }, 90_000);
});

describe('docker runtime: sandboxes yield the CPU to the control plane', () => {
  // A group of this run's own, removed at the end (the engine never removes a parent group).
  const name = `previews_t${Math.random().toString(16).slice(2, 10)}`;
  let runtime: DockerRuntime | undefined;
  let id: string | undefined;
  afterAll(async () => {
    if (runtime && id) await runtime.remove(id).catch(() => {});
    await runtime?.close();
    for (const hierarchy of readdirSync('/sys/fs/cgroup'))
      await rmdir(`/sys/fs/cgroup/${hierarchy}/${name}`).catch(() => {});
  });

  it('runs each sandbox in the shared group, whose CPU weight the agent set, and still reads its memory', async () => {
    runtime = await createDockerRuntime({
      ...dockerOptions(`t-${Math.random().toString(16).slice(2, 10)}`),
      cpuGroup: { name, shares: 128 },
    });
    const box = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
    id = box.id;
    const { State, HostConfig } = await runtime.docker.getContainer(box.id).inspect();
    expect(HostConfig.CgroupParent).toBe(`/${name}`);
    // The engine on this machine: cgroupfs driver, cgroup v1.
    const cpuLine = readFileSync(`/proc/${State.Pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => /:(cpu|cpu,cpuacct|cpuacct,cpu):/.test(l));
    expect(cpuLine).toMatch(new RegExp(`:/${name}/${box.id}$`));
    expect(readFileSync(`/sys/fs/cgroup/cpu/${name}/cpu.shares`, 'utf8').trim()).toBe('128');
    // Read from the group's cgroup (the engine's default parent has no such container).
    expect(await runtime.memoryBytes(box.id)).toBeGreaterThan(0);
  }, 90_000);
});
