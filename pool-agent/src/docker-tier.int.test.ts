/**
 * The shared Tier contract against the docker tier (tiers/src/docker): a real pool agent on the real
 * Docker engine, with the preview image of scripts/test-env.sh. It lives here because tiers does not
 * depend on pool-agent.
 */
import { randomBytes } from 'node:crypto';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { type AgentEndpoint, createDockerTier } from '@preview/tiers/docker';
import { contractSpec, runTierContract } from '@preview/tiers/testkit/contract';
import { createAgent } from './agent.ts';
import { loadConfig } from './config.ts';
import { createDockerRuntime } from './runtime/docker.ts';

const IMAGE = process.env['AGENT_TEST_IMAGE'] ?? TEST_PREVIEW_IMAGE;

runTierContract({
  name: 'docker (real pool agent + Docker engine)',
  create: async () => {
    const token = `tok_${randomBytes(16).toString('hex')}`;
    const config = loadConfig({
      AGENT_TOKEN: token,
      AGENT_PORT: '0',
      NODE_NAME: `tc-${randomBytes(4).toString('hex')}`,
      PREVIEW_IMAGE: IMAGE,
      PREVIEW_NETWORK: 'preview-net-test',
      PREVIEW_MEMORY_MIB: '256',
      WARM_POOL: 'vite-vanilla=1',
      NODE_SLOTS: '8',
      LOG_LEVEL: 'silent',
    });
    const runtime = await createDockerRuntime({
      docker: testDocker(),
      node: config.NODE_NAME,
      image: IMAGE,
      network: config.PREVIEW_NETWORK,
      uid: 1000,
      memoryMiB: 256,
      cpus: 1,
      pidsLimit: 128,
      tmpfsMiB: 32,
      labels: { [TEST_LABEL]: '1' },
    });
    const agent = await createAgent({ config, runtime });
    const node: AgentEndpoint = { nodeId: agent.nodeId, url: agent.url, token };
    const mine = new Set<string>();
    const tier = createDockerTier({
      pickNode: async (spec) => {
        mine.add(spec.previewId);
        return node;
      },
      nodeOf: async (id) => (mine.has(id) ? node : undefined),
      nodes: async () => [node],
    });
    return {
      tier,
      spec: () => contractSpec(),
      cleanup: async () => {
        await agent.close({ removeSandboxes: true });
        for (const box of await runtime.list()) await runtime.remove(box.id);
        await runtime.close();
      },
    };
  },
});
