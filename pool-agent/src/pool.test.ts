import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WarmPools } from './pool.ts';
import type { ContainerRuntime, SandboxInfo } from './runtime/types.ts';

let server: Server;
let upstream: string;
beforeAll(async () => {
  // What a sandbox's daemon answers: health 200 (manifest and sync are optional for the pool).
  server = createServer((req, res) => {
    res.writeHead(req.url === '/__preview/health' ? 200 : 404).end('{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  upstream = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** A started, unclaimed sandbox of `template` whose daemon is the test's health server. */
const warmBox = (id: string, template: SandboxInfo['template']): SandboxInfo =>
  ({
    id,
    template,
    previewId: undefined,
    pool: template,
    state: 'running',
    upstream,
    daemonToken: 'token-0123456789abcdef',
  }) as SandboxInfo;

/** A runtime whose creates wait until `release()` is called. */
function gatedRuntime() {
  const gates: Array<() => void> = [];
  const templates: string[] = [];
  let n = 0;
  const runtime = {
    async create(o: { template: SandboxInfo['template'] }): Promise<SandboxInfo> {
      templates.push(o.template);
      await new Promise<void>((r) => gates.push(r));
      return warmBox(`box-${++n}`, o.template);
    },
    async remove() {
      return true;
    },
  } as unknown as ContainerRuntime;
  return {
    runtime,
    /** Creates waiting at the gate. */
    starts: () => gates.length,
    /** The template of every create so far, in order. */
    templates: () => [...templates],
    release: () => gates.shift()?.(),
  };
}

const until = async (check: () => boolean) => {
  while (!check()) await new Promise((r) => setTimeout(r, 5));
};

/**
 * WarmPools.acquireStarting: a claim on a node whose last free slot holds a warm sandbox that is
 * still starting takes that sandbox once it is ready (rather than answering `capacity`).
 */
describe('WarmPools.acquireStarting', () => {
  it('waits for the starting sandbox of the template and takes it', async () => {
    const rt = gatedRuntime();
    const claimed = { n: 1 };
    const pools = new WarmPools({
      runtime: rt.runtime,
      targets: { 'vite-vanilla': 1 },
      slots: 2,
      claimed: () => claimed.n,
      readyTimeoutMs: 5_000,
    });
    void pools.populate();
    await until(() => rt.starts() === 1);
    // The one free slot is the refill in flight: no room for a cold start, nothing ready yet.
    expect(pools.free()).toBe(0);
    expect(pools.acquire('vite-vanilla')).toBeUndefined();
    const taken = pools.acquireStarting('vite-vanilla');
    rt.release();
    const w = await taken;
    expect(w?.box.id).toBe('box-1');
    w?.link.close();
    // The refill the take started: let it through so the drain settles.
    claimed.n = 2;
    while (rt.starts()) rt.release();
    await pools.drain();
  });

  it('resolves undefined when nothing of the template is starting, and honours the signal', async () => {
    const rt = gatedRuntime();
    const pools = new WarmPools({
      runtime: rt.runtime,
      targets: { 'vite-react': 1 },
      slots: 1,
      claimed: () => 0,
      readyTimeoutMs: 5_000,
    });
    expect(await pools.acquireStarting('vite-vanilla')).toBeUndefined();
    void pools.populate();
    await until(() => rt.starts() === 1);
    expect(await pools.acquireStarting('vite-vanilla')).toBeUndefined();
    const ac = new AbortController();
    const waiting = pools.acquireStarting('vite-react', ac.signal);
    ac.abort(new Error('claim aborted'));
    await expect(waiting).rejects.toThrow('claim aborted');
    rt.release();
    await pools.settled();
    const w = pools.acquire('vite-react');
    expect(w?.box.id).toBe('box-1');
    w?.link.close();
    await pools.drain();
  });
});

/**
 * A warm start that fails (the engine refused, the app was not up in time) is tried again by the
 * pool itself: without a claim to trigger a refill, a pool that lost a start stayed short for good.
 */
describe('WarmPools: failed starts', () => {
  it('fills the pool again after a start failed, with nothing else asking', async () => {
    let creates = 0;
    const runtime = {
      async create(o: { template: SandboxInfo['template'] }): Promise<SandboxInfo> {
        creates++;
        if (creates <= 2) throw new Error('engine busy: container start timed out');
        return warmBox(`box-${creates}`, o.template);
      },
      async remove() {
        return true;
      },
    } as unknown as ContainerRuntime;
    const pools = new WarmPools({
      runtime,
      targets: { 'vite-vanilla': 1 },
      slots: 2,
      claimed: () => 0,
      readyTimeoutMs: 5_000,
      retryMs: 5,
    });
    await pools.populate();
    expect(pools.counts()['vite-vanilla'] ?? 0).toBe(0);
    for (let i = 0; i < 400 && !pools.counts()['vite-vanilla']; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect([pools.counts()['vite-vanilla'], creates]).toEqual([1, 3]);
    await pools.drain();
  });
});

/**
 * A refill after a burst of claims: a start is CPU-bound (the daemon and the dev server booting), and
 * starting every missing sandbox at once saturated a node (scale bench: a run queue of 100 on two
 * cores, the claimed previews and the agent waiting behind it). Starts go in turns.
 */
describe('WarmPools: start concurrency', () => {
  it('starts at most startConcurrency sandboxes at once, round-robin over the templates, and fills every pool', async () => {
    const rt = gatedRuntime();
    const pools = new WarmPools({
      runtime: rt.runtime,
      targets: { 'vite-react': 3, 'vite-vanilla': 2 },
      slots: 10,
      claimed: () => 0,
      readyTimeoutMs: 5_000,
      startConcurrency: 2,
    });
    void pools.populate();
    await until(() => rt.starts() >= 2);
    await new Promise((r) => setTimeout(r, 20));
    expect(rt.starts()).toBe(2);
    // One of each template first: a pool is not left empty while another fills.
    expect(rt.templates()).toEqual(['vite-react', 'vite-vanilla']);
    let most = 0;
    while (pools.counts()['vite-react'] !== 3 || pools.counts()['vite-vanilla'] !== 2) {
      most = Math.max(most, pools.starting());
      expect(rt.starts()).toBeLessThanOrEqual(2);
      if (rt.starts() > 0) rt.release();
      await new Promise((r) => setTimeout(r, 5));
    }
    await pools.settled();
    expect(most).toBe(2);
    expect(rt.templates()).toHaveLength(5);
    await pools.drain();
  });

  it('refills in turns after claims, and settled() waits for the whole refill', async () => {
    const rt = gatedRuntime();
    const pools = new WarmPools({
      runtime: rt.runtime,
      targets: { 'vite-vanilla': 3 },
      slots: 10,
      claimed: () => 0,
      readyTimeoutMs: 5_000,
      startConcurrency: 1,
    });
    const auto = setInterval(() => rt.release(), 5);
    try {
      void pools.populate();
      await pools.settled();
      expect(pools.counts()['vite-vanilla']).toBe(3);
      for (let i = 0; i < 3; i++) pools.acquire('vite-vanilla')?.link.close();
      await new Promise((r) => setTimeout(r, 0));
      expect(pools.starting()).toBe(1);
      await pools.settled();
      expect([pools.counts()['vite-vanilla'], rt.templates().length]).toEqual([3, 6]);
    } finally {
      clearInterval(auto);
    }
    await pools.drain();
  });
});
