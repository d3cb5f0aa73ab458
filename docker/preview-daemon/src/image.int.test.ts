import { runInImage, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { expect, it } from 'vitest';

it('the preview-base image runs Node as a non-root user under an init', async () => {
  const docker = testDocker();
  const { stdout, exitCode } = await runInImage(docker, TEST_PREVIEW_IMAGE, [
    'node',
    '-e',
    'console.log(JSON.stringify({ v: process.version, uid: process.getuid(), ppid: process.ppid }))',
  ]);
  expect(exitCode).toBe(0);
  const out = JSON.parse(stdout.trim().split('\n').pop()!);
  expect(out.v).toBe(process.version);
  expect(out.uid).not.toBe(0);
  expect(out.ppid).toBe(1); // tini is PID 1, Node its child
  const info = await docker.getImage(TEST_PREVIEW_IMAGE).inspect();
  expect(info.Config.User).not.toMatch(/^(0|root)?(:|$)/);
});
