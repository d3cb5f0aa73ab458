import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { requirePrerequisites } from '@preview/testkit';
import { beforeEach, describe, expect, it } from 'vitest';
import { testConfig, userProject } from '../test/fixtures.ts';
import { createAgent } from './agent.ts';
import { createProcessRuntime } from './runtime/process.ts';

const repo = join(import.meta.dirname, '../..');
const bundle = join(repo, 'docker/preview-daemon/dist/daemon.mjs');
const templatesDir = join(repo, 'docker/preview-base/.build/context/templates');
const missing = !existsSync(bundle)
  ? 'daemon bundle missing: run scripts/test-env.sh'
  : !existsSync(join(templatesDir, 'vite-vanilla/node_modules'))
    ? 'installed templates missing: run scripts/test-env.sh'
    : undefined;

describe('the agent on the host-process runtime (embedded default)', () => {
  beforeEach(() => requirePrerequisites(missing));
  it('a warm claim serves the user page; destroy is true then false; close removes the processes', async () => {
    const config = testConfig({ WARM_POOL: 'vite-vanilla=1' });
    const runtime = createProcessRuntime({ daemonBundle: bundle, templatesDir, sandbox: 'auto' });
    const agent = await createAgent({ config, runtime });
    try {
      await agent.pools.populate();
      await agent.pools.settled();
      const previewId = `p${randomBytes(6).toString('hex')}`;
      const r = await agent.claim({
        previewId,
        template: 'vite-vanilla',
        files: userProject('host-process'),
      });
      expect(r.warm).toBe(true);
      const page = await fetch(`${r.upstream}/`, { headers: { 'x-agent-token': config.AGENT_TOKEN! } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('host-process');
      expect(await agent.destroy(previewId)).toBe(true);
      expect(await agent.destroy(previewId)).toBe(false);
    } finally {
      await agent.close();
    }
    expect(await runtime.list()).toEqual([]);
  });
});
