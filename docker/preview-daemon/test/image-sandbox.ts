import { randomBytes } from 'node:crypto';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { DAEMON_PORT } from '@preview/tiers';
import type Docker from 'dockerode';
import { health, until } from './helpers.ts';

/** A preview daemon container from the preview image, hardened as the pool agent runs it. */
export interface Sandbox {
  container: Docker.Container;
  port: number;
  token: string;
  exec(cmd: string[]): Promise<{ stdout: string; exitCode: number }>;
}

export const docker = testDocker();
const started: Docker.Container[] = [];

/** Removes every container {@link sandbox} started (call from `afterAll`). */
export async function removeSandboxes(): Promise<void> {
  for (const c of started.splice(0)) await c.remove({ force: true, v: true }).catch(() => {});
}

/** Starts a daemon container for `template` with a read-only root, tmpfs /tmp, no capabilities. */
export async function sandbox(template: string, env: Record<string, string> = {}): Promise<Sandbox> {
  const token = randomBytes(24).toString('hex');
  const container = await docker.createContainer({
    Image: TEST_PREVIEW_IMAGE,
    Env: Object.entries({ PREVIEW_TEMPLATE: template, PREVIEW_DAEMON_TOKEN: token, ...env }).map(
      ([k, v]) => `${k}=${v}`,
    ),
    Labels: { [TEST_LABEL]: '1' },
    ExposedPorts: { [`${DAEMON_PORT}/tcp`]: {} },
    Volumes: { '/project': {} },
    HostConfig: {
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': 'rw,nosuid,nodev,size=512m' },
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      PidsLimit: 512,
      Memory: 2 * 1024 * 1024 * 1024,
      MemorySwap: 2 * 1024 * 1024 * 1024,
      PortBindings: { [`${DAEMON_PORT}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] },
    },
  });
  started.push(container);
  await container.start();
  const info = await container.inspect();
  const port = Number(info.NetworkSettings.Ports[`${DAEMON_PORT}/tcp`]?.[0]?.HostPort);
  return {
    container,
    port,
    token,
    async exec(cmd) {
      const e = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
      const stream = await e.start({});
      const chunks: Buffer[] = [];
      const { PassThrough } = await import('node:stream');
      const out = new PassThrough();
      out.on('data', (c: Buffer) => chunks.push(c));
      container.modem.demuxStream(stream, out, out);
      await new Promise((r) => stream.on('end', r));
      const { ExitCode } = await e.inspect();
      return { stdout: Buffer.concat(chunks).toString('utf8'), exitCode: ExitCode ?? -1 };
    },
  };
}

export async function logsOf(c: Docker.Container): Promise<string> {
  return (await c.logs({ stdout: true, stderr: true, tail: 40 })).toString('utf8');
}

export async function waitReady(s: Sandbox, timeoutMs: number): Promise<void> {
  try {
    await until(async () => (await health(s.port)).status === 200, timeoutMs, 'health 200');
  } catch (e) {
    throw new Error(`${(e as Error).message}; container ${s.container.id}:\n${await logsOf(s.container)}`);
  }
}
