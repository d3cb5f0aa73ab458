/**
 * The one contract every `Tier` adapter passes (`@preview/tiers/testkit/contract`). Not a test file
 * itself: an adapter's test file calls `runTierContract` with a factory. Every case runs for every
 * adapter: a case an adapter cannot pass is a defect of the adapter (or of its fake), not a skip.
 *
 * @example
 * // tiers/src/fly/fly-tier.int.test.ts
 * runTierContract({
 *   name: 'fly (fake Machines API)',
 *   sync: 'channel',
 *   create: async () => ({ tier: createFlyTier(opts), spec: () => makeSpec(), cleanup: () => fake.close() }),
 * });
 */
import { randomBytes } from 'node:crypto';
import { requirePrerequisites } from '@preview/testkit';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError, NotFoundError, TierUnavailableError } from '../src/errors.ts';
import type { PreviewSpec, Tier } from '../src/types.ts';
import type { FileBatch, ServerFrame } from '../src/wire.ts';

/** The names of the contract's cases. */
export const TIER_CONTRACT_CASES = [
  'create places the preview on this tier',
  'status after create',
  'apply acks with the same seq',
  'openSync',
  'suspend then resume',
  'destroy is true then false',
  'destroy of an unknown id is false',
  'unknown ids',
  'capacity shape',
  'close is repeat-safe',
  'bad input is rejected',
] as const;
export type TierContractCase = (typeof TIER_CONTRACT_CASES)[number];

export interface TierContractSubject {
  tier: Tier;
  /** A fresh, valid spec with a new previewId on every call. */
  spec: () => PreviewSpec;
  cleanup?: () => Promise<void>;
}

export interface TierContractOptions {
  name: string;
  create: () => Promise<TierContractSubject>;
  /**
   * `channel`: `openSync` returns a live channel whose batches are acked.
   * `none`: the tier has no server sandbox (browser): `openSync` and `apply` must throw `TierUnavailableError`.
   * Default `channel`.
   */
  sync?: 'channel' | 'none';
  /**
   * What this adapter needs and this machine lacks (e.g. a daemon that serves sync), or `undefined`:
   * every case then fails naming it. Not a skip: a test that needs something missing fails.
   */
  missing?: string | false | undefined;
  /** Per-case timeout (default 120 s: creating a sandbox can be slow on a busy machine). */
  timeoutMs?: number;
}

/** A fresh preview id of the shape the router mints. */
export function contractPreviewId(): string {
  return `p${randomBytes(8).toString('hex')}`;
}

/** A minimal valid vanilla-Vite project. */
export function contractSpec(overrides: Partial<PreviewSpec> = {}): PreviewSpec {
  return {
    previewId: contractPreviewId(),
    userId: '00000000-0000-4000-8000-000000000001',
    template: 'vite-vanilla',
    files: {
      'index.html':
        '<!doctype html><html><body><h1 id="t">contract</h1><script type="module" src="/main.js"></script></body></html>',
      'main.js': 'document.getElementById("t").dataset.ok = "1";\n',
    },
    ...overrides,
  };
}

function batch(seq: number, content: string): FileBatch {
  return { type: 'batch', seq, ops: [{ op: 'put', path: 'main.js', content, encoding: 'utf8' }] };
}

function waitForFrame(
  onFrame: (l: (f: ServerFrame) => void) => () => void,
  match: (f: ServerFrame) => boolean,
  timeoutMs: number,
): Promise<ServerFrame> {
  return new Promise((resolve, reject) => {
    const seen: string[] = [];
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching frame within ${timeoutMs} ms; saw: ${seen.join(', ') || 'nothing'}`));
    }, timeoutMs);
    const off = onFrame((f) => {
      seen.push(JSON.stringify(f).slice(0, 200));
      if (!match(f)) return;
      clearTimeout(timer);
      off();
      resolve(f);
    });
  });
}

export function runTierContract(options: TierContractOptions): void {
  const timeout = options.timeoutMs ?? 120_000;
  const sync = options.sync ?? 'channel';

  describe(`Tier contract: ${options.name}`, () => {
    let subject: TierContractSubject | undefined;
    const created = new Set<string>();

    const s = (): TierContractSubject => {
      if (!subject) throw new Error('subject was not created (see the beforeAll error)');
      return subject;
    };
    const createOne = async (): Promise<{ spec: PreviewSpec; placementTier: string }> => {
      const spec = s().spec();
      created.add(spec.previewId);
      const placement = await s().tier.create(spec, { signal: AbortSignal.timeout(timeout) });
      return { spec, placementTier: placement.tier };
    };

    beforeAll(async () => {
      if (options.missing) return;
      subject = await options.create();
    }, timeout);
    // Each case fails naming what is missing (a failed beforeAll would count them as skipped).
    beforeEach(() => requirePrerequisites(options.missing));

    afterAll(async () => {
      if (!subject) return;
      const errors: unknown[] = [];
      for (const id of created) await subject.tier.destroy(id).catch((e) => errors.push(e));
      await subject.tier.close().catch((e) => errors.push(e));
      await subject.cleanup?.().catch((e) => errors.push(e));
      if (errors.length) throw new AggregateError(errors, `contract teardown: ${errors.length} failure(s)`);
    }, timeout);

    const test = (name: TierContractCase, fn: () => Promise<void>) => it(name, fn, timeout);

    test('create places the preview on this tier', async () => {
      const spec = s().spec();
      created.add(spec.previewId);
      const p = await s().tier.create(spec);
      expect(p.tier).toBe(s().tier.name);
      expect(p.previewId).toBe(spec.previewId);
      if (p.tier === 'docker') {
        expect(p.containerId).toBeTruthy();
        expect(p.nodeId).toBeTruthy();
        expect(() => new URL(p.upstream)).not.toThrow();
      } else if (p.tier === 'fly') {
        expect(p.machineId).toBeTruthy();
        expect(p.instanceId).toBeTruthy();
        expect(p.region).toBeTruthy();
        expect(() => new URL(p.upstream)).not.toThrow();
      } else {
        expect(['webcontainer', 'bundler']).toContain(p.runtime);
        expect(p.template).toBe(spec.template);
      }
    });

    test('status after create', async () => {
      const { spec } = await createOne();
      const st = await s().tier.status(spec.previewId);
      expect(st).toBeDefined();
      expect(['installing', 'starting', 'ready']).toContain(st?.phase);
    });

    test('apply acks with the same seq', async () => {
      const { spec } = await createOne();
      if (sync === 'none') {
        // No server sandbox: nothing may ack `applied` on the runtime's behalf.
        await expect(s().tier.apply(spec.previewId, batch(7, 'x'))).rejects.toBeInstanceOf(
          TierUnavailableError,
        );
        return;
      }
      const ack = await s().tier.apply(spec.previewId, batch(7, 'console.log("seven");\n'));
      expect(ack).toMatchObject({ type: 'ack', seq: 7 });
      expect(['applied', 'persisted']).toContain(ack.stage);
      const ack2 = await s().tier.apply(spec.previewId, batch(8, 'console.log("eight");\n'));
      expect(ack2.seq).toBe(8);
    });

    test('openSync', async () => {
      const { spec } = await createOne();
      if (sync === 'none') {
        await expect(s().tier.openSync(spec.previewId)).rejects.toBeInstanceOf(TierUnavailableError);
        return;
      }
      const ch = await s().tier.openSync(spec.previewId, { signal: AbortSignal.timeout(timeout) });
      try {
        expect(ch.open).toBe(true);
        const onFrame = ch.onFrame.bind(ch);
        const acked = waitForFrame(onFrame, (f) => f.type === 'ack' && f.seq === 11, timeout / 2);
        ch.send(batch(11, 'console.log("eleven");\n'));
        expect(await acked).toMatchObject({ type: 'ack', seq: 11, stage: 'applied' });
        const acked2 = waitForFrame(onFrame, (f) => f.type === 'ack' && f.seq === 12, timeout / 2);
        ch.send(batch(12, 'console.log("twelve");\n'));
        expect(await acked2).toMatchObject({ type: 'ack', seq: 12 });
      } finally {
        ch.close();
      }
      expect(ch.open).toBe(false);
      expect(() => ch.send(batch(13, 'x'))).toThrow();
    });

    test('suspend then resume', async () => {
      const { spec } = await createOne();
      await s().tier.suspend(spec.previewId);
      expect((await s().tier.status(spec.previewId))?.phase).toBe('suspended');
      // Suspending twice is harmless.
      await s().tier.suspend(spec.previewId);
      await s().tier.resume(spec.previewId, { signal: AbortSignal.timeout(timeout) });
      const st = await s().tier.status(spec.previewId);
      expect(st).toBeDefined();
      expect(st?.phase).not.toBe('suspended');
      if (sync === 'none') return;
      const ack = await s().tier.apply(spec.previewId, batch(21, 'console.log("after resume");\n'));
      expect(ack.seq).toBe(21);
    });

    test('destroy is true then false', async () => {
      const { spec } = await createOne();
      expect(await s().tier.destroy(spec.previewId)).toBe(true);
      expect(await s().tier.destroy(spec.previewId)).toBe(false);
      expect(await s().tier.status(spec.previewId)).toBeUndefined();
      created.delete(spec.previewId);
    });

    test('destroy of an unknown id is false', async () => {
      expect(await s().tier.destroy(contractPreviewId())).toBe(false);
    });

    test('unknown ids', async () => {
      const id = contractPreviewId();
      expect(await s().tier.status(id)).toBeUndefined();
      await expect(s().tier.apply(id, batch(1, 'x'))).rejects.toBeInstanceOf(NotFoundError);
      if (sync === 'channel') await expect(s().tier.openSync(id)).rejects.toBeInstanceOf(NotFoundError);
    });

    test('capacity shape', async () => {
      const c = await s().tier.capacity();
      expect(typeof c.available).toBe('number');
      expect(typeof c.total).toBe('number');
      expect(c.available).toBeGreaterThanOrEqual(0);
      expect(c.total).toBeGreaterThanOrEqual(c.available);
      if (c.warm !== undefined) {
        for (const [k, v] of Object.entries(c.warm)) {
          expect(typeof k).toBe('string');
          expect(Number.isInteger(v) && v >= 0).toBe(true);
        }
      }
    });

    test('bad input is rejected', async () => {
      const good = s().spec();
      const badPath = { ...good, previewId: contractPreviewId(), files: { '../escape.js': 'x' } };
      await expect(s().tier.create(badPath)).rejects.toBeInstanceOf(InvalidInputError);
      const badTemplate = { ...good, previewId: contractPreviewId(), template: 'cobol' as 'next' };
      await expect(s().tier.create(badTemplate)).rejects.toBeInstanceOf(InvalidInputError);
      const badId = { ...good, previewId: '' };
      await expect(s().tier.create(badId)).rejects.toBeInstanceOf(InvalidInputError);

      const { spec } = await createOne();
      const badBatch = {
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: '/etc/passwd', content: 'x' }],
      } as unknown as FileBatch;
      await expect(s().tier.apply(spec.previewId, badBatch)).rejects.toBeInstanceOf(InvalidInputError);
      const emptyBatch = { type: 'batch', seq: 2, ops: [] } as unknown as FileBatch;
      await expect(s().tier.apply(spec.previewId, emptyBatch)).rejects.toBeInstanceOf(InvalidInputError);
    });

    test('close is repeat-safe', async () => {
      // A subject of its own, so closing it does not end the others' tier.
      const own = await options.create();
      try {
        const spec = own.spec();
        await own.tier.create(spec);
        await own.tier.destroy(spec.previewId);
        await own.tier.close();
        await own.tier.close();
      } finally {
        await own.cleanup?.();
      }
    });
  });
}
