import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { runRuntimeContract } from './contract.case.test.ts';
import { createDockerRuntime } from './docker.ts';

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
