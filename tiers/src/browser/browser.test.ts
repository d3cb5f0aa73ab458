import { describe, expect, it } from 'vitest';
import { contractSpec, runTierContract } from '../../testkit/contract.ts';
import { NotFoundError, TierUnavailableError } from '../errors.ts';
import { createBrowserTier, memoryBrowserPlacements } from './index.ts';

const spec = (over: object = {}) => ({
  previewId: '00000000-0000-4000-8000-000000000001',
  userId: '00000000-0000-4000-8000-0000000000aa',
  template: 'vite-react' as const,
  files: { 'index.html': '<div id=root></div>' },
  ...over,
});

describe('browser tier', () => {
  it('picks WebContainers when the client has them, the bundler otherwise', async () => {
    const tier = createBrowserTier();
    expect(await tier.create(spec({ client: { webcontainer: true, bundler: true } }))).toEqual({
      tier: 'browser',
      previewId: spec().previewId,
      runtime: 'webcontainer',
      template: 'vite-react',
    });
    const other = spec({ previewId: '00000000-0000-4000-8000-000000000002', client: { bundler: true } });
    expect(await tier.create(other)).toMatchObject({ runtime: 'bundler' });
  });

  it('is unavailable without a capable client, and the bundler cannot run Next', async () => {
    const tier = createBrowserTier();
    await expect(tier.create(spec({ client: {} }))).rejects.toBeInstanceOf(TierUnavailableError);
    await expect(tier.create(spec({ template: 'next', client: { bundler: true } }))).rejects.toThrow(
      /bundler/,
    );
  });

  it('has no sync channel and no sandbox: apply never acks, it names why', async () => {
    const tier = createBrowserTier();
    const s = spec({ client: { webcontainer: true } });
    await tier.create(s);
    await expect(tier.openSync(s.previewId)).rejects.toBeInstanceOf(TierUnavailableError);
    await expect(
      tier.apply(s.previewId, { type: 'batch', seq: 3, ops: [{ op: 'delete', path: 'a.js' }] }),
    ).rejects.toMatchObject({ code: 'no_sandbox', tier: 'browser' });
    expect(await tier.status(s.previewId)).toMatchObject({ phase: 'ready' });
    expect(await tier.destroy(s.previewId)).toBe(true);
    expect(await tier.destroy(s.previewId)).toBe(false);
    expect(await tier.status(s.previewId)).toBeUndefined();
    await expect(tier.suspend(s.previewId)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('keeps placements in the store it is given: a second tier on the same store sees them', async () => {
    const placements = memoryBrowserPlacements();
    const first = createBrowserTier({ placements });
    const s = spec({ client: { bundler: true } });
    await first.create(s);
    await first.suspend(s.previewId);
    await first.close();
    const second = createBrowserTier({ placements });
    expect(await second.status(s.previewId)).toEqual({ phase: 'suspended' });
    await second.resume(s.previewId);
    expect(await second.status(s.previewId)).toMatchObject({ phase: 'ready' });
    expect(await second.destroy(s.previewId)).toBe(true);
    expect(await second.destroy(s.previewId)).toBe(false);
  });
});

runTierContract({
  name: 'browser',
  sync: 'none',
  create: async () => ({
    tier: createBrowserTier(),
    spec: () => contractSpec({ client: { webcontainer: true, bundler: true } }),
  }),
});
