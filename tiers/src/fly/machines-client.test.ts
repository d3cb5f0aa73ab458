import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type FakeMachinesApi,
  FLY_MACHINES_API_FIXTURE,
  startFakeMachinesApi,
} from '../../testkit/fly/index.ts';
import { CapacityError, ConflictError, TimeoutError } from '../errors.ts';
import { FlyApiError, type FlyMachineConfig, FlyMachinesClient } from './machines-client.ts';
import { backoffDelay, parseRetryAfter } from './retry.ts';

const config = (previewId: string): FlyMachineConfig => ({
  image: 'registry.fly.io/preview-test:1',
  env: { PREVIEW_TEMPLATE: 'vite-vanilla' },
  metadata: { preview_id: previewId, user_id: 'u1' },
  guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 512 },
});

describe('backoff', () => {
  it('full jitter stays within [0, min(cap, base·2^attempt)]', () => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const ceiling = Math.min(2_000, 100 * 2 ** attempt);
      expect(backoffDelay({ attempt, baseMs: 100, capMs: 2_000, random: () => 0 })).toBe(0);
      const hi = backoffDelay({ attempt, baseMs: 100, capMs: 2_000, random: () => 0.999999 });
      expect(hi).toBeLessThanOrEqual(ceiling);
      expect(hi).toBeGreaterThanOrEqual(ceiling - 1);
    }
  });
  it('Retry-After sets the floor', () => {
    expect(
      backoffDelay({ attempt: 0, baseMs: 100, capMs: 2_000, random: () => 0, retryAfterMs: 1_500 }),
    ).toBe(1_500);
    const d = backoffDelay({ attempt: 0, baseMs: 100, capMs: 2_000, random: () => 0.5, retryAfterMs: 1_500 });
    expect(d).toBeGreaterThanOrEqual(1_500);
    expect(d).toBeLessThanOrEqual(1_600);
    expect(parseRetryAfter('3')).toBe(3_000);
    expect(parseRetryAfter(new Date(Date.now() + 10_000).toUTCString())).toBeGreaterThan(8_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe('FlyMachinesClient against the fake Machines API', () => {
  let fake: FakeMachinesApi;
  let delays: number[];
  let client: FlyMachinesClient;

  const makeClient = (extra: Partial<ConstructorParameters<typeof FlyMachinesClient>[0]> = {}) =>
    new FlyMachinesClient({
      token: fake.token,
      app: fake.app,
      baseUrl: fake.url,
      retryBaseMs: 50,
      retryCapMs: 400,
      sleep: async (ms) => {
        delays.push(ms);
      },
      ...extra,
    });

  beforeEach(async () => {
    fake = await startFakeMachinesApi({
      apiSchemaPath: FLY_MACHINES_API_FIXTURE,
      regions: ['ams', 'fra', 'cdg'],
      runner: null,
      transitionMs: 5,
    });
    delays = [];
    client = makeClient();
  });
  afterEach(async () => {
    expect(fake.validationErrors).toEqual([]);
    await fake.close();
  });

  it('checks its options at construction', () => {
    expect(() => new FlyMachinesClient({ token: '', app: 'a' })).toThrow(/token/);
    expect(() => new FlyMachinesClient({ token: 't', app: 'Bad App' })).toThrow(/"app"/);
    expect(() => new FlyMachinesClient({ token: 't', app: 'a', baseUrl: 'nope' })).toThrow(/baseUrl/);
  });

  it('creates with metadata, waits for started, lists by metadata, gets', async () => {
    const m = await client.createMachine({ config: config('p1'), regions: ['fra'] });
    expect(m.region).toBe('fra');
    expect(['created', 'starting']).toContain(m.state);
    await client.waitForState(m.id, 'started', { instanceId: m.instance_id });
    expect((await client.getMachine(m.id))?.state).toBe('started');
    await client.createMachine({ config: config('p2') });
    const found = await client.listMachines({ metadata: { preview_id: 'p1' } });
    expect(found.map((x) => x.id)).toEqual([m.id]);
    expect(found[0]?.config?.metadata).toMatchObject({ preview_id: 'p1', user_id: 'u1' });
    expect(fake.requests.some((r) => r.query.includes('metadata.preview_id=p1'))).toBe(true);
    expect(await client.getMachine('doesnotexist')).toBeUndefined();
  });

  it('sends the bearer token; a wrong one is refused without retrying', async () => {
    const bad = new FlyMachinesClient({ token: 'wrong', app: fake.app, baseUrl: fake.url });
    await expect(bad.listMachines()).rejects.toMatchObject({ name: 'FlyApiError', status: 401 });
    expect(fake.requests.filter((r) => r.status === 401)).toHaveLength(1);
    await client.listMachines();
    expect(fake.requests.at(-1)?.authorization).toBe(`Bearer ${fake.token}`);
  });

  it('retries 429 honouring Retry-After, and 5xx with jittered backoff, then succeeds', async () => {
    fake.injectFault({ status: 429, count: 1, retryAfterS: 2 });
    fake.injectFault({ status: 503, count: 2 });
    const list = await client.listMachines();
    expect(list).toEqual([]);
    expect(delays).toHaveLength(3);
    expect(delays[0]).toBeGreaterThanOrEqual(2_000);
    expect(delays[0]).toBeLessThanOrEqual(2_050);
    expect(delays[1]).toBeLessThanOrEqual(100); // attempt 1: ≤ 50·2
    expect(delays[2]).toBeLessThanOrEqual(200); // attempt 2: ≤ 50·4
    expect(fake.requests.map((r) => r.status)).toEqual([429, 503, 503, 200]);
  });

  it('gives up after maxRetries with the last error', async () => {
    const c = makeClient({ maxRetries: 2 });
    fake.injectFault({ status: 502, count: 10 });
    const err = await c.listMachines().catch((e) => e);
    expect(err).toBeInstanceOf(FlyApiError);
    expect(err.status).toBe(502);
    expect(delays).toHaveLength(2);
  });

  it('does not retry 4xx other than 429', async () => {
    fake.injectFault({ status: 400, count: 1 });
    await expect(client.listMachines()).rejects.toMatchObject({ status: 400 });
    expect(delays).toEqual([]);
  });

  it('adopts the machine when a create answered 5xx after it took effect', async () => {
    fake.injectFault({ status: 500, method: 'POST', path: /\/machines$/, after: true });
    const m = await client.createMachine({ config: config('adopt-me'), adoptKey: 'preview_id' });
    expect(fake.machines().filter((x) => x.config?.metadata?.['preview_id'] === 'adopt-me')).toHaveLength(1);
    expect(m.config?.metadata?.['preview_id']).toBe('adopt-me');
  });

  it('falls back to the next region on insufficient_capacity, and fails with CapacityError when none has any', async () => {
    fake.setRegionCapacity('ams', false);
    const m = await client.createMachine({ config: config('p3'), regions: ['ams', 'fra'] });
    expect(m.region).toBe('fra');
    expect(fake.requests.filter((r) => r.method === 'POST').map((r) => r.status)).toEqual([412, 200]);
    fake.setRegionCapacity('fra', false);
    const err = await client.createMachine({ config: config('p4'), regions: ['ams', 'fra'] }).catch((e) => e);
    expect(err).toBeInstanceOf(CapacityError);
    expect(err.message).toMatch(/ams.*fra/);
  });

  it('leases: mutations need the nonce while it is held; a second holder conflicts; release frees it', async () => {
    const m = await client.createMachine({ config: config('p5') });
    await client.waitForState(m.id, 'started');
    const lease = await client.acquireLease(m.id, { ttlS: 30, description: 'test' });
    expect(lease.nonce).toBeTruthy();
    await expect(client.stopMachine(m.id)).rejects.toMatchObject({ status: 409 });
    await expect(client.acquireLease(m.id)).rejects.toBeInstanceOf(ConflictError);
    const shown = await fetch(`${fake.url}/apps/${fake.app}/machines/${m.id}/lease`, {
      headers: { authorization: `Bearer ${fake.token}` },
    }).then((r) => r.json());
    expect(shown).toMatchObject({ nonce: lease.nonce, description: 'test' });
    await client.stopMachine(m.id, { leaseNonce: lease.nonce });
    expect(fake.requests.at(-1)).toMatchObject({ leaseNonce: lease.nonce, status: 200 });
    await client.releaseLease(m.id, lease.nonce);
    const again = await client.withLease(m.id, async (nonce) => nonce);
    expect(again).not.toBe(lease.nonce);
    await client.waitForState(m.id, 'stopped');
  });

  it('wait times out with TimeoutError when the state never comes', async () => {
    const m = await client.createMachine({ config: config('p6'), skipLaunch: true });
    await expect(client.waitForState(m.id, 'started', { timeoutMs: 1_200 })).rejects.toBeInstanceOf(
      TimeoutError,
    );
    expect(fake.requests.some((r) => r.path.endsWith('/wait') && r.status === 408)).toBe(true);
  });

  it('suspend and start again; suspend of a stopped machine is refused', async () => {
    const m = await client.createMachine({ config: config('p7') });
    await client.waitForState(m.id, 'started');
    await client.suspendMachine(m.id);
    await client.waitForState(m.id, 'suspended');
    expect((await client.getMachine(m.id))?.state).toBe('suspended');
    await client.startMachine(m.id);
    await client.waitForState(m.id, 'started');
    await client.stopMachine(m.id);
    await client.waitForState(m.id, 'stopped');
    await expect(client.suspendMachine(m.id)).rejects.toMatchObject({ status: 412 });
  });

  it('destroy is true, then false; destroyed machines leave the list', async () => {
    const m = await client.createMachine({ config: config('p8') });
    await client.waitForState(m.id, 'started');
    expect(await client.destroyMachine(m.id, { force: false }).catch((e) => e.status)).toBe(412);
    expect(await client.destroyMachine(m.id)).toBe(true);
    await client.waitForState(m.id, 'destroyed').catch(() => {});
    expect(await client.destroyMachine(m.id)).toBe(false);
    expect(await client.listMachines({ metadata: { preview_id: 'p8' } })).toEqual([]);
    expect(fake.requests.some((r) => r.method === 'DELETE' && r.query.includes('force=true'))).toBe(true);
  });

  it('an aborted signal stops a call and its retries', async () => {
    const c = makeClient({ sleep: undefined, retryBaseMs: 5_000, retryCapMs: 5_000 });
    fake.injectFault({ status: 503, count: 10 });
    const ac = new AbortController();
    const p = c.listMachines({}, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('caller gave up')), 50);
    await expect(p).rejects.toThrow('caller gave up');
    await expect(c.getMachine('x', { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow(
      'already',
    );
  });

  it('the fake rejects a body that does not match the OpenAPI document', async () => {
    const res = await fetch(`${fake.url}/apps/${fake.app}/machines`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fake.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ config: { image: 'x', guest: { cpus: 'lots' } } }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/cpus must be integer/);
    expect(fake.validationErrors).toHaveLength(1);
    fake.validationErrors.length = 0; // expected here; afterEach checks the client made none
  });
});
