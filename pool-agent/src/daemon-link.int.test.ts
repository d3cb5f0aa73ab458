import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidInputError, type StatusEvent } from '@preview/tiers';
import { DaemonLink } from '@preview/tiers/daemon-sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../test/fixtures.ts';
import { linkTo, syncUrl, waitReady } from './daemon-client.ts';
import { newDaemonToken } from './pool.ts';
import { createProcessRuntime, type ProcessRuntime } from './runtime/process.ts';
import type { SandboxInfo } from './runtime/types.ts';

const repo = join(import.meta.dirname, '../..');
const bundle = join(repo, 'docker/preview-daemon/dist/daemon.mjs');
const templatesDir = join(repo, 'docker/preview-base/.build/context/templates');

// The one daemon sync client (@preview/tiers/daemon-sync) against a real daemon run as a host process.
describe('DaemonLink against a real preview-daemon', () => {
  let runtime: ProcessRuntime;
  let box: SandboxInfo;

  beforeAll(async () => {
    for (const need of [bundle, join(templatesDir, 'vite-vanilla/node_modules')])
      if (!existsSync(need)) throw new Error(`${need} is missing: run npm run test:env`);
    runtime = createProcessRuntime({ daemonBundle: bundle, templatesDir, sandbox: 'none' });
    box = await runtime.create({ template: 'vite-vanilla', daemonToken: newDaemonToken() });
    await waitReady(box.upstream, { timeoutMs: 60_000 });
  });
  afterAll(async () => {
    if (box) await runtime.remove(box.id);
    await runtime?.close();
  });

  it('follows the daemon status, acks a batch, and rejects a bad one as the caller’s error', async () => {
    const link = linkTo(box);
    const seen: StatusEvent[] = [];
    link.onStatus((s) => seen.push(s));
    try {
      link.watch();
      // The daemon sends its status on connect.
      await until(async () => link.status?.phase === 'ready', 10_000, 'the ready status frame');
      expect(seen.at(-1)?.phase).toBe('ready');
      expect(
        await link.send({
          type: 'batch',
          seq: 1,
          ops: [{ op: 'put', path: 'notes.txt', content: 'n', encoding: 'utf8' }],
        }),
      ).toEqual({
        type: 'ack',
        seq: 1,
        stage: 'applied',
      });
      const bad = link.send({
        type: 'batch',
        seq: 2,
        ops: [{ op: 'put', path: 'node_modules/x.js', content: 'x', encoding: 'utf8' }],
      });
      await expect(bad).rejects.toBeInstanceOf(InvalidInputError);
      await expect(bad).rejects.toMatchObject({ code: 'invalid_path' });
    } finally {
      link.close();
    }
    await expect(link.send({ type: 'batch', seq: 3, ops: [] })).rejects.toMatchObject({
      code: 'channel_closed',
    });
  });

  it('refuses a wrong token as unauthorized and stops trying', async () => {
    const link = new DaemonLink({ url: syncUrl(box.upstream), token: 'wrong-token-wrong-token' });
    await expect(link.connect()).rejects.toMatchObject({ code: 'unauthorized' });
    link.close();
  });
});
