/**
 * React Native through Expo's web target on the real engine: a warm `expo` sandbox (Metro serving
 * react-native-web, in the image built by `PREVIEW_IMAGE=preview-base:expo bash scripts/test-env.sh`)
 * is claimed with a user's App.tsx, renders its text in Chromium through a preview origin, and an
 * edit of App.tsx reaches the page by Fast Refresh over Metro's socket, keeping component state.
 * The claim's time is printed (timings are reported, not asserted).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { launchChromium, requirePrerequisites } from '@preview/testkit';
import type { ProjectFiles } from '@preview/tiers';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { IMAGE, startAgent, testConfig } from '../test/fixtures.ts';
import { previewOrigin } from '../test/preview-origin.ts';
import type { Agent } from './agent.ts';

const templateDir = join(import.meta.dirname, '../../templates/expo');

/** The expo template as a user's project files: text as UTF-8, images as base64. */
function templateFiles(): ProjectFiles {
  const out: ProjectFiles = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      if (name === 'node_modules' || name === '.expo') continue;
      const p = join(dir, name);
      const path = relative(templateDir, p);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.png'))
        out[path] = { content: readFileSync(p).toString('base64'), encoding: 'base64' };
      else out[path] = readFileSync(p, 'utf8');
    }
  };
  walk(templateDir);
  return out;
}

/** A user's App.tsx: React Native components only (react-native-web renders `testID` as data-testid). */
function app(title: string): string {
  return `import { useState } from 'react';
import { Pressable, Text, View } from 'react-native';

export default function App() {
  const [count, setCount] = useState(0);
  return (
    <View style={{ flex: 1, alignItems: 'center', justifyContent: 'center' }}>
      <Text testID="title">${title}</Text>
      <Pressable testID="counter" onPress={() => setCount((c) => c + 1)}>
        <Text>count is {count}</Text>
      </Pressable>
    </View>
  );
}
`;
}

/** What is missing for this suite: an image whose templates include expo with its Metro cache. */
function missingExpoImage(): string | undefined {
  try {
    execFileSync(
      'docker',
      [
        'run',
        '--rm',
        '--entrypoint',
        'node',
        IMAGE,
        '-e',
        "require('fs').statSync('/opt/preview/prebuilt/expo/metro-cache')",
      ],
      { stdio: 'ignore', timeout: 60_000 },
    );
    return undefined;
  } catch {
    return `image ${IMAGE} has no expo template (with its prebuilt Metro cache): build it with PREVIEW_IMAGE=preview-base:expo bash scripts/test-env.sh and run this test with PREVIEW_IMAGE=preview-base:expo`;
  }
}

describe('Expo web preview with Fast Refresh through the agent (Chromium)', () => {
  const missing = missingExpoImage();
  let agent: Agent;
  let stop: (() => Promise<void>) | undefined;
  let token: string;

  beforeAll(async () => {
    if (missing) return;
    const config = testConfig({
      WARM_POOL: 'expo=1',
      // Metro holds its module graph and transform results in memory (~300 MiB after the first bundle).
      PREVIEW_MEMORY_MIB: '1024',
      READY_TIMEOUT_MS: '180000',
    });
    token = config.AGENT_TOKEN!;
    ({ agent, stop } = await startAgent(config));
    await agent.pools.populate();
    await agent.pools.settled();
  }, 300_000);
  beforeEach(() => requirePrerequisites(missing));
  afterAll(async () => {
    await stop?.();
  });

  it('a warm expo claim renders the App text, and an App.tsx edit keeps component state', async () => {
    const previewId = `p${randomBytes(6).toString('hex')}`;
    const files = templateFiles();
    files['App.tsx'] = app('User app');
    const t0 = performance.now();
    const r = await agent.claim({ previewId, template: 'expo', files });
    expect(r.warm).toBe(true);
    const origin = await previewOrigin(r.upstream, token);
    const chrome = await launchChromium();
    try {
      const page = await chrome.context.newPage();
      await page.goto(`${origin.url}/`);
      await expect.poll(() => page.getByTestId('title').textContent(), { timeout: 60_000 }).toBe('User app');
      console.info(
        `expo warm claim: ${r.ms} ms (agent), ${Math.round(performance.now() - t0)} ms to the App text in Chromium`,
      );
      const counter = page.getByTestId('counter');
      for (let i = 0; i < 3; i++) await counter.click();
      await expect.poll(() => counter.textContent()).toBe('count is 3');
      // A full reload would lose this as well as the count.
      await page.evaluate(() => {
        (window as unknown as { previewMarker: string }).previewMarker = 'kept';
      });
      const ack = await agent.apply(previewId, {
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'App.tsx', content: app('Edited app'), encoding: 'utf8' }],
      });
      expect(ack.seq).toBe(1);
      await expect
        .poll(() => page.getByTestId('title').textContent(), { timeout: 60_000 })
        .toBe('Edited app');
      expect(await counter.textContent()).toBe('count is 3');
      expect(await page.evaluate(() => (window as unknown as { previewMarker?: string }).previewMarker)).toBe(
        'kept',
      );
    } finally {
      await chrome.close();
      await origin.close();
      await agent.destroy(previewId);
    }
  }, 240_000);
});
