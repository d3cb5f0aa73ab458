import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { IMAGE, NETWORK } from '../test/fixtures.ts';
import { buildRuntime } from './agent.ts';
import { loadConfig } from './config.ts';

const bundle = join(import.meta.dirname, '../../docker/preview-daemon/dist/daemon.mjs');
const log = pino({ level: 'silent' });

describe('AGENT_RUNTIME=auto (the embedded default)', () => {
  it('uses Docker when the engine has the image', async () => {
    const rt = await buildRuntime(
      loadConfig({
        AGENT_RUNTIME: 'auto',
        PREVIEW_IMAGE: IMAGE,
        PREVIEW_NETWORK: NETWORK,
        DAEMON_BUNDLE: bundle,
      }),
      log,
    );
    expect(rt.kind).toBe('docker');
    await rt.close();
  });

  it('falls back to host processes when the image is missing', async () => {
    const rt = await buildRuntime(
      loadConfig({ AGENT_RUNTIME: 'auto', PREVIEW_IMAGE: 'preview-base:no-such-tag', DAEMON_BUNDLE: bundle }),
      log,
    );
    expect(rt.kind).toBe('process');
    await rt.close();
  });

  it('names the missing bundle for the process runtime', async () => {
    await expect(buildRuntime(loadConfig({ AGENT_RUNTIME: 'process' }), log)).rejects.toThrow(
      /DAEMON_BUNDLE/,
    );
  });
});
