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
import { IMAGE, startAgent, testConfig, until } from '../test/fixtures.ts';
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

/**
 * A user's App.tsx: React Native components only (react-native-web renders `testID` as data-testid);
 * `withMs`: it also uses the `ms` package, which the template does not declare.
 */
function app(title: string, withMs = false): string {
  return `import { useState } from 'react';
import { Pressable, Text, View } from 'react-native';
${withMs ? "import ms from 'ms';\n" : ''}
export default function App() {
  const [count, setCount] = useState(0);
  return (
    <View style={{ flex: 1, alignItems: 'center', justifyContent: 'center' }}>
      <Text testID="title">${title}</Text>
      <Pressable testID="counter" onPress={() => setCount((c) => c + 1)}>
        <Text>count is {count}</Text>
      </Pressable>${withMs ? '\n      <Text testID="ms">{ms(60000)}</Text>' : ''}
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
      // The agent's default: a warm Expo sandbox holds ~110 MiB, ~170 MiB while Metro restarts after an install.
      PREVIEW_MEMORY_MIB: '512',
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

  it('a warm expo claim renders the App text, an App.tsx edit keeps component state, and an added dependency installs', async () => {
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

      // A dependency added by an edit: the daemon installs what the template lacks and restarts
      // Metro on it; the preview is ready again and a reloaded page renders with the package.
      const pkg = JSON.parse(files['package.json'] as string) as { dependencies: Record<string, string> };
      pkg.dependencies = { ...pkg.dependencies, ms: '2.1.3' };
      await agent.apply(previewId, {
        type: 'batch',
        seq: 2,
        ops: [
          { op: 'put', path: 'package.json', content: JSON.stringify(pkg, null, 2), encoding: 'utf8' },
          { op: 'put', path: 'App.tsx', content: app('With ms', true), encoding: 'utf8' },
        ],
      });
      const settled = await until(
        async () => {
          const s = await agent.status(previewId);
          return s && (s.phase === 'ready' || s.phase === 'error') ? s : undefined;
        },
        180_000,
        'the install and restart',
      );
      expect(settled.phase, JSON.stringify(settled)).toBe('ready');
      await page.reload();
      await expect.poll(() => page.getByTestId('ms').textContent(), { timeout: 60_000 }).toBe('1m');
      expect(await page.getByTestId('title').textContent()).toBe('With ms');
    } finally {
      await chrome.close();
      await origin.close();
      await agent.destroy(previewId);
    }
  }, 420_000);
});
