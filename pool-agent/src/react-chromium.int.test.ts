import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { launchChromium } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, testConfig } from '../test/fixtures.ts';
import { previewOrigin } from '../test/preview-origin.ts';
import type { Agent } from './agent.ts';

const templateDir = join(import.meta.dirname, '../../templates/vite-react');

function templateFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      if (name === 'node_modules') continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(templateDir, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(templateDir);
  return out;
}

describe('React Fast Refresh through the agent (Chromium)', () => {
  let agent: Agent;
  let stop: () => Promise<void>;
  let token: string;

  beforeAll(async () => {
    const config = testConfig({ WARM_POOL: 'vite-react=1' });
    token = config.AGENT_TOKEN!;
    ({ agent, stop } = await startAgent(config));
    await agent.pools.populate();
    await agent.pools.settled();
  });
  afterAll(async () => {
    await stop?.();
  });

  it('a warm vite-react claim keeps component state across an edit', async () => {
    const previewId = `p${randomBytes(6).toString('hex')}`;
    const files = templateFiles();
    const app = files['src/App.jsx']!.replace('Vite React preview', 'User app');
    files['src/App.jsx'] = app;
    const r = await agent.claim({ previewId, template: 'vite-react', files });
    expect(r.warm).toBe(true);
    const origin = await previewOrigin(r.upstream, token);
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`${origin.url}/`);
      await expect.poll(() => page.getByTestId('title').textContent(), { timeout: 30_000 }).toBe('User app');
      const button = page.getByTestId('counter');
      for (let i = 0; i < 3; i++) await button.click();
      await expect.poll(() => button.textContent()).toBe('count is 3');
      const ack = await agent.apply(previewId, {
        type: 'batch',
        seq: 1,
        ops: [
          {
            op: 'put',
            path: 'src/App.jsx',
            content: app.replace('User app', 'Edited app'),
            encoding: 'utf8',
          },
        ],
      });
      expect(ack.seq).toBe(1);
      await expect
        .poll(() => page.getByTestId('title').textContent(), { timeout: 30_000 })
        .toBe('Edited app');
      expect(await button.textContent()).toBe('count is 3');
    } finally {
      await chrome.close();
      await origin.close();
      await agent.destroy(previewId);
    }
  });
});
