import Docker from 'dockerode';

/** The preview image the test setup builds (scripts/test-env.sh). */
export const TEST_PREVIEW_IMAGE = process.env['PREVIEW_IMAGE'] ?? 'preview-base:dev';

/** Label every test container carries, so a failed run can be swept. */
export const TEST_LABEL = 'preview.test';

export function testDocker(): Docker {
  return new Docker({ socketPath: process.env['DOCKER_SOCKET'] ?? '/var/run/docker.sock' });
}

/** Runs a command in a fresh container of `image`, returns its stdout, removes the container. */
export async function runInImage(
  docker: Docker,
  image: string,
  cmd: string[],
  hostConfig: Docker.HostConfig = {},
): Promise<{ stdout: string; exitCode: number }> {
  const container = await docker.createContainer({
    Image: image,
    Cmd: cmd,
    Labels: { [TEST_LABEL]: '1' },
    HostConfig: { AutoRemove: false, ...hostConfig },
  });
  try {
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    const chunks: Buffer[] = [];
    const out = new (await import('node:stream')).PassThrough();
    out.on('data', (c: Buffer) => chunks.push(c));
    container.modem.demuxStream(stream, out, out);
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    return { stdout: Buffer.concat(chunks).toString('utf8'), exitCode: StatusCode };
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}
