/**
 * Issue 14, "Overflow with the real docker tier": two real pool agents (2 slots each, one warm
 * vite-vanilla sandbox) registered with the router, and the fly tier against the in-repo fake
 * Machines API, whose machines run the project's preview-daemon as host processes. Every slot of
 * every agent is filled; the next create goes to the fly tier under its own id, with the reasons
 * saying the docker tier was full; deleting docker previews frees capacity and the next create goes
 * back to docker.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createDockerTier } from '@preview/tiers/docker';
import { createFlyTier } from '@preview/tiers/fly';
import {
  daemonRunner,
  type FakeMachinesApi,
  FLY_MACHINES_API_FIXTURE,
  startFakeMachinesApi,
} from '@preview/tiers/testkit/fly';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DockerNode, startDockerNode } from '../test/docker-node.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';

const REPO = resolve(import.meta.dirname, '../..');
const DAEMON_BUILT = resolve(REPO, 'docker/preview-daemon/dist/daemon.mjs');
const DAEMON_SOURCE = resolve(REPO, 'docker/preview-daemon/src/main.ts');
const IMAGE_PATHS = { templatesDir: resolve(REPO, 'templates'), nodeModules: resolve(REPO, 'node_modules') };

const FILES = {
  'index.html':
    '<!doctype html><html><body><div id="app"></div><script type="module" src="/main.js"></script></body></html>',
  'main.js': 'document.querySelector("#app").textContent = "overflow";\n',
};

interface Reason {
  tier: string;
  outcome: string;
  reason: string;
}
interface View {
  id: string;
  tier: string | null;
  state: string;
  reasons: Reason[];
}

describe('overflow: real docker agents full → fly (fake Machines API) → back to docker', () => {
  let h: Harness;
  let fake: FakeMachinesApi;
  const nodes: DockerNode[] = [];

  beforeAll(async () => {
    fake = await startFakeMachinesApi({
      apiSchemaPath: FLY_MACHINES_API_FIXTURE,
      runner: existsSync(DAEMON_BUILT)
        ? daemonRunner({ entry: DAEMON_BUILT, ...IMAGE_PATHS })
        : daemonRunner({ entry: DAEMON_SOURCE, nodeArgs: ['--import', 'tsx'], ...IMAGE_PATHS }),
      regions: ['ams'],
      transitionMs: 5,
    });
    h = await createHarness({
      tiers: ({ nodeDirectory }) => ({
        docker: createDockerTier(nodeDirectory),
        fly: createFlyTier({
          client: { token: fake.token, app: fake.app, baseUrl: fake.url, retryBaseMs: 20, retryCapMs: 200 },
          appUrl: fake.edgeUrl,
          image: 'registry.fly.io/preview-base:test',
          regions: fake.regions,
          daemonTokenSecret: randomBytes(24).toString('hex'),
          maxMachines: 4,
          pollMs: 50,
        }),
      }),
    });
    // One after the other: both agents share the test preview network, which the first creates.
    for (const name of ['ovf-a', 'ovf-b'])
      nodes.push(await startDockerNode(h, { name, slots: 2, warmPool: 'vite-vanilla=1' }));
  }, 600_000);

  afterAll(async () => {
    for (const n of nodes) await n.close();
    await h?.close();
    await fake?.close();
  });

  async function create(): Promise<View> {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: FILES, serverOnly: true }),
    });
    const view = (await res.json()) as View;
    expect(res.status, JSON.stringify(view)).toBe(201);
    return view;
  }

  async function remove(id: string): Promise<void> {
    const res = await h.router.app.request(`/v1/previews/${id}`, {
      method: 'DELETE',
      headers: bearer(h.alice.jwt),
    });
    expect(res.status, await res.text()).toBeLessThan(300);
  }

  /** The node a docker preview was placed on, from the router's session. */
  async function nodeOf(id: string): Promise<string> {
    const s = await h.router.previews.store.get(id);
    if (s?.placement?.tier !== 'docker')
      throw new Error(`preview ${id} is not on docker: ${JSON.stringify(s)}`);
    return s.placement.nodeId;
  }

  const used = (n: DockerNode) => n.agent.capacity().used;

  it('fills every agent, overflows to fly under the same id, and goes back to docker once freed', {
    timeout: 600_000,
  }, async () => {
    const nodeIds = nodes.map((n) => n.agent.nodeId);

    // 2 agents × 2 slots: four creates, all on docker, two on each agent (spread).
    const docker: View[] = [];
    for (let i = 0; i < 4; i++) {
      const v = await create();
      expect(
        v.tier,
        `create ${i}: ${JSON.stringify(v.reasons)}; agents: ${JSON.stringify(nodes.map((n) => [n.agent.capacity(), n.agent.sessions()]))}`,
      ).toBe('docker');
      const chosen = v.reasons.find((r) => r.outcome === 'chosen');
      expect(chosen?.tier).toBe('docker');
      // The chosen node had room by its own fresh answer.
      expect(chosen?.reason, JSON.stringify(v.reasons)).toMatch(/[12] of 2 slots free \(fresh\)/);
      docker.push(v);
    }
    const placedOn = await Promise.all(docker.map((v) => nodeOf(v.id)));
    for (const id of nodeIds) expect(placedOn.filter((x) => x === id)).toHaveLength(2);
    for (const n of nodes) expect(used(n)).toBe(2);

    // Every agent full: the next create goes to fly, and the reasons say why.
    const over = await create();
    expect(over.tier, JSON.stringify(over)).toBe('fly');
    expect(over.reasons).toContainEqual({
      tier: 'docker',
      outcome: 'skipped',
      reason: 'docker tier is full (4/4 in use)',
    });
    expect(over.reasons.find((r) => r.outcome === 'chosen')?.tier).toBe('fly');
    const session = await h.router.previews.store.get(over.id);
    expect(session?.placement).toMatchObject({ tier: 'fly', previewId: over.id });
    const machineId = session?.placement?.tier === 'fly' ? session.placement.machineId : undefined;
    expect(fake.machine(machineId ?? '')?.state).toBe('started');
    expect(fake.validationErrors).toEqual([]);
    await h.router.previews.waitReady(over.id, 120_000);

    // Deleting two docker previews on the first agent frees its slots (the agent says so at once).
    const onFirst = docker.filter((_, i) => placedOn[i] === nodeIds[0]);
    for (const v of onFirst) await remove(v.id);
    expect(used(nodes[0]!)).toBe(0);
    expect(used(nodes[1]!)).toBe(2);

    // New creates go back to docker, onto the agent with room; the full one is not asked first.
    const back = await create();
    expect(back.tier, JSON.stringify(back)).toBe('docker');
    expect(await nodeOf(back.id)).toBe(nodeIds[0]);
    expect(back.reasons.find((r) => r.outcome === 'chosen')?.reason).toMatch(/2 of 2 slots free \(fresh\)/);
    expect(back.reasons.some((r) => r.tier === 'fly')).toBe(false);
    expect(JSON.stringify(back.reasons)).not.toContain('answered capacity');
    const again = await create();
    expect(again.tier, JSON.stringify(again)).toBe('docker');
    expect(await nodeOf(again.id)).toBe(nodeIds[0]);

    // Full again: fly once more.
    const over2 = await create();
    expect(over2.tier, JSON.stringify(over2)).toBe('fly');

    for (const v of [back, again, over, over2, ...docker.filter((d) => !onFirst.includes(d))])
      await remove(v.id);
    for (const n of nodes) expect(used(n)).toBe(0);
    expect(fake.machines().filter((m) => m.state !== 'destroyed')).toEqual([]);
  });
});
