import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { requirePrerequisites } from '@preview/testkit';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { contractSpec, runTierContract } from '../../testkit/contract.ts';
import {
  daemonRunner,
  type FakeMachinesApi,
  FLY_MACHINES_API_FIXTURE,
  type MachineRunner,
  startFakeMachinesApi,
} from '../../testkit/fly/index.ts';
import {
  CapacityError,
  InvalidInputError,
  NotFoundError,
  PreviewError,
  TierUnavailableError,
} from '../errors.ts';
import type { Tier } from '../types.ts';
import { DAEMON_PORT } from '../wire.ts';
import { createFlyTier, type FlyTierOptions } from './fly-tier.ts';

/**
 * The fly tier end to end against the fake Machines API, whose machines run the project's real
 * preview-daemon as a host process: the built bundle when present (`npm run build -w
 * docker/preview-daemon`), else its TypeScript source through tsx.
 */
const REPO = resolve(import.meta.dirname, '../../..');
const DAEMON_BUILT = resolve(REPO, 'docker/preview-daemon/dist/daemon.mjs');
const DAEMON_SOURCE = resolve(REPO, 'docker/preview-daemon/src/main.ts');
const IMAGE_PATHS = { templatesDir: resolve(REPO, 'templates'), nodeModules: resolve(REPO, 'node_modules') };
const runner: MachineRunner = existsSync(DAEMON_BUILT)
  ? daemonRunner({ entry: DAEMON_BUILT, ...IMAGE_PATHS })
  : daemonRunner({ entry: DAEMON_SOURCE, nodeArgs: ['--import', 'tsx'], ...IMAGE_PATHS });
const startFake = (options: Omit<Parameters<typeof startFakeMachinesApi>[0], 'apiSchemaPath'>) =>
  startFakeMachinesApi({ apiSchemaPath: FLY_MACHINES_API_FIXTURE, ...options });

const SECRET = 'test-secret-0123456789abcdef';

async function tierOn(fake: FakeMachinesApi, extra: Partial<FlyTierOptions> = {}): Promise<Tier> {
  return createFlyTier({
    client: { token: fake.token, app: fake.app, baseUrl: fake.url, retryBaseMs: 20, retryCapMs: 200 },
    appUrl: fake.edgeUrl,
    image: 'registry.fly.io/preview-base:test',
    regions: fake.regions,
    daemonTokenSecret: SECRET,
    maxMachines: 10,
    startTimeoutMs: 30_000,
    readyTimeoutMs: 90_000,
    pollMs: 50,
    ...extra,
  });
}

/** Does the daemon in this checkout start and serve the sync socket? */
async function daemonServesSync(): Promise<boolean> {
  const p = await runner({
    id: 'probe',
    config: {
      image: 'x',
      env: { PREVIEW_TEMPLATE: 'vite-vanilla', PREVIEW_DAEMON_TOKEN: 'probe-token-0123456789' },
    },
  });
  if (!p) return false;
  try {
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`http://127.0.0.1:${p.port}/__preview/health`).then(
        () => true,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return await new Promise<boolean>((r) => {
      const ws = new WebSocket(`ws://127.0.0.1:${p.port}/__preview/sync`, {
        headers: { authorization: 'Bearer probe-token-0123456789' },
      });
      ws.once('open', () => {
        ws.close();
        r(true);
      });
      ws.once('unexpected-response', () => r(false));
      ws.once('error', () => r(false));
    });
  } finally {
    await p.stop();
  }
}

const hasSync = await daemonServesSync();
/** Without a daemon that serves sync, every case fails naming it. */
const NO_DAEMON =
  !hasSync &&
  `a preview-daemon (${existsSync(DAEMON_BUILT) ? DAEMON_BUILT : DAEMON_SOURCE}) that starts and serves /__preview/sync: build it with \`npm run build -w @preview/preview-daemon\``;

runTierContract({
  name: 'fly (fake Machines API + host-process preview-daemon)',
  sync: 'channel',
  missing: NO_DAEMON,
  create: async () => {
    const fake = await startFake({ runner, regions: ['ams', 'fra'] });
    const tier = await tierOn(fake);
    return {
      tier,
      spec: () => contractSpec(),
      cleanup: async () => {
        const problems = [...fake.validationErrors];
        await fake.close();
        if (problems.length) throw new Error(`fake saw invalid bodies: ${problems.join('\n')}`);
      },
    };
  },
});

describe('fly tier specifics', () => {
  let fake: FakeMachinesApi;
  let tier: Tier;
  // An empty project: the daemon seeds it from the template, as on a warm machine.
  const spec = (over = {}) => contractSpec({ files: {}, ...over });

  beforeEach(() => requirePrerequisites(NO_DAEMON));
  beforeAll(async () => {
    if (NO_DAEMON) return;
    fake = await startFake({ runner, regions: ['ams', 'fra'] });
    tier = await tierOn(fake, { maxMachines: 2 });
  });
  afterEach(() => {
    if (fake) expect(fake.validationErrors).toEqual([]);
  });
  afterAll(async () => {
    if (!fake) return;
    for (const m of fake.machines())
      await tier.destroy(m.config?.metadata?.['preview_id'] ?? '').catch(() => {});
    await tier.close();
    await fake.close();
  });

  it('checks its options', async () => {
    const base = {
      client: { token: 't', app: 'a' },
      image: 'i',
      regions: ['ams'],
      daemonTokenSecret: SECRET,
      maxMachines: 1,
    };
    expect(() => createFlyTier({ ...base, image: '' })).toThrow(/"image"/);
    expect(() => createFlyTier({ ...base, regions: [] })).toThrow(/"regions"/);
    expect(() => createFlyTier({ ...base, daemonTokenSecret: 'short' })).toThrow(/daemonTokenSecret/);
    expect(() => createFlyTier({ ...base, maxMachines: -1 })).toThrow(/maxMachines/);
  });

  it('creates a machine with metadata, env, guest, service and policies, and routes to it by instance id', async () => {
    fake.setRegionCapacity('ams', false);
    const s = spec({ env: { DATABASE_URL: 'postgres://x' } });
    try {
      const p = await tier.create(s);
      if (p.tier !== 'fly') throw new Error('wrong tier');
      expect(p.region).toBe('fra'); // ams had no capacity
      expect(p.upstream).toBe(fake.edgeUrl);
      expect(p.instanceId).toBe(p.machineId);
      const m = fake.machine(p.machineId)!;
      expect(m.state).toBe('started');
      expect(m.config?.metadata).toMatchObject({
        preview_id: s.previewId,
        user_id: s.userId,
        template: 'vite-vanilla',
      });
      expect(m.config?.env).toMatchObject({
        PREVIEW_TEMPLATE: 'vite-vanilla',
        DATABASE_URL: 'postgres://x',
        PREVIEW_DAEMON_PORT: String(DAEMON_PORT),
      });
      expect(m.config?.env?.['PREVIEW_DAEMON_TOKEN']?.length).toBeGreaterThan(20);
      expect(m.config?.services?.[0]).toMatchObject({ internal_port: DAEMON_PORT, autostart: true });
      expect(m.config?.guest).toMatchObject({ cpu_kind: 'shared', cpus: 1, memory_mb: 1024 });
      expect(m.config).toMatchObject({ auto_destroy: true, restart: { policy: 'on-failure' } });
      const res = await fetch(`${p.upstream}/__preview/health`, {
        headers: { 'fly-force-instance-id': p.instanceId },
      });
      expect(res.status).toBe(200);
      // Creating the same preview again adopts its machine instead of making a second one.
      const seeded = await fetch(`${p.upstream}/`, { headers: { 'fly-force-instance-id': p.instanceId } });
      expect(seeded.status).toBe(200);
      const again = await tier.create(s);
      expect(again).toEqual(p);
      expect(fake.machines().filter((x) => x.config?.metadata?.['preview_id'] === s.previewId)).toHaveLength(
        1,
      );
    } finally {
      fake.setRegionCapacity('ams', true);
      await tier.destroy(s.previewId);
    }
  });

  it("serves the user's files through the edge, and an apply changes what it serves", async () => {
    const s = contractSpec({
      files: {
        'index.html':
          '<!doctype html><html><body><p>marker-7f3a</p><script type="module" src="/main.js"></script></body></html>',
        'main.js': 'export const v = "first";\n',
      },
    });
    const p = await tier.create(s);
    if (p.tier !== 'fly') throw new Error('wrong tier');
    try {
      const get = (path: string) =>
        fetch(`${p.upstream}${path}`, { headers: { 'fly-force-instance-id': p.instanceId } }).then((r) =>
          r.text(),
        );
      expect(await get('/')).toContain('marker-7f3a');
      expect(await get('/main.js')).toContain('first');
      const ack = await tier.apply(s.previewId, {
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'main.js', content: 'export const v = "second";\n', encoding: 'utf8' }],
      });
      expect(ack).toEqual({ type: 'ack', seq: 1, stage: 'applied' });
      // On disk at the ack; the dev server's watcher then invalidates its cached transform.
      await expect.poll(() => get('/main.js'), { timeout: 20_000, interval: 100 }).toContain('second');
    } finally {
      await tier.destroy(s.previewId);
    }
  });

  it('suspends, is woken by the edge or resumed, and reports its state', async () => {
    const s = spec();
    const p = await tier.create(s);
    if (p.tier !== 'fly') throw new Error('wrong tier');
    try {
      await tier.suspend(s.previewId);
      expect(fake.machine(p.machineId)?.state).toBe('suspended');
      expect((await tier.status(s.previewId))?.phase).toBe('suspended');
      // A request through the edge wakes a suspended machine (service autostart).
      const res = await fetch(`${p.upstream}/__preview/health`, {
        headers: { 'fly-force-instance-id': p.instanceId },
      });
      expect(res.status).toBe(200);
      expect(fake.machine(p.machineId)?.state).toBe('started');
      await tier.suspend(s.previewId);
      await tier.resume(s.previewId);
      expect(fake.machine(p.machineId)?.state).toBe('started');
      expect((await tier.status(s.previewId))?.phase).not.toBe('suspended');
      // Suspend and resume go through a lease.
      expect(fake.requests.filter((r) => r.path.endsWith('/suspend')).every((r) => r.leaseNonce)).toBe(true);
    } finally {
      await tier.destroy(s.previewId);
    }
  });

  it('capacity comes from maxMachines; at the limit create fails with CapacityError', async () => {
    expect(await tier.capacity()).toEqual({ total: 2, available: 2 });
    const a = spec();
    const b = spec();
    await tier.create(a);
    await tier.create(b);
    try {
      expect(await tier.capacity()).toEqual({ total: 2, available: 0 });
      await expect(tier.create(spec())).rejects.toBeInstanceOf(CapacityError);
    } finally {
      await tier.destroy(a.previewId);
      await tier.destroy(b.previewId);
    }
    expect((await tier.capacity()).available).toBe(2);
  });

  it('destroy is true then false, status is then undefined, and unknown ids are NotFound', async () => {
    const s = spec();
    await tier.create(s);
    expect(await tier.destroy(s.previewId)).toBe(true);
    expect(await tier.destroy(s.previewId)).toBe(false);
    expect(await tier.status(s.previewId)).toBeUndefined();
    await expect(tier.suspend(s.previewId)).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      tier.apply('nope', { type: 'batch', seq: 1, ops: [{ op: 'delete', path: 'a' }] }),
    ).rejects.toBeInstanceOf(NotFoundError);
    await expect(tier.create({ ...spec(), previewId: 'bad id!' })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('lists its machines as sandboxes for reconciliation, and not once they are destroyed', async () => {
    const s = spec();
    const t0 = Date.now();
    await tier.create(s);
    // A machine of something else in the same app is not ours to list.
    const foreign = await (tier as ReturnType<typeof createFlyTier>).client.createMachine({
      config: { image: 'other:1', metadata: { preview_id: 'not-ours' } },
    });
    const mine = (await tier.sandboxes?.()) ?? [];
    const entry = mine.find((x) => x.previewId === s.previewId);
    expect(entry?.createdAt).toBeGreaterThanOrEqual(Math.floor(t0 / 1000) * 1000);
    expect(mine.some((x) => x.previewId === 'not-ours')).toBe(false);
    expect(await tier.destroy(s.previewId)).toBe(true);
    expect((await tier.sandboxes?.())?.some((x) => x.previewId === s.previewId)).toBe(false);
    await (tier as ReturnType<typeof createFlyTier>).client.destroyMachine(foreign.id, { force: true });
  });

  it('a project too large to write into a machine is TierUnavailable, and creates nothing', async () => {
    const small = await tierOn(fake, { maxInlineFilesBytes: 16 });
    const before = fake.machines().length;
    try {
      const err = await small.create(contractSpec()).catch((e) => e);
      expect(err).toBeInstanceOf(TierUnavailableError);
      expect(err.code).toBe('fly_project_too_large');
      expect(fake.machines()).toHaveLength(before);
    } finally {
      await small.close();
    }
  });

  it('a create whose machine never becomes reachable destroys the machine it made', async () => {
    const dead = await startFake({ runner: null, regions: ['ams'] });
    const t = await tierOn(dead, { startTimeoutMs: 800 });
    try {
      const err = await t.create(spec()).catch((e) => e);
      expect(err).toBeInstanceOf(PreviewError);
      expect(err.code).toBe('timeout');
      await new Promise((r) => setTimeout(r, 200));
      expect(dead.machines().map((m) => m.state)).toEqual(['destroyed']);
      expect(dead.requests.some((r) => r.method === 'DELETE')).toBe(true);
    } finally {
      await t.close();
      await dead.close();
    }
  });
});
