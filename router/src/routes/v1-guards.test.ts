import { CapacityError } from '@preview/tiers';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { createMemoryRateLimiter } from '../infra/rate-limit.ts';
import { createMetrics } from '../metrics.ts';
import { clientIp, limit } from './v1-guards.ts';

describe('limit', () => {
  it('lets perMin requests through a minute, then throws rate_limited and counts it', async () => {
    const deps = { rateLimiter: createMemoryRateLimiter({ now: () => 0 }), metrics: createMetrics() };
    await limit(deps, 'ip:a', 2, 'ip');
    await limit(deps, 'ip:a', 2, 'ip');
    const e = await limit(deps, 'ip:a', 2, 'ip').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CapacityError);
    expect((e as CapacityError).code).toBe('rate_limited');
    const counted = await deps.metrics.rateLimited.get();
    expect(counted.values.find((v) => v.labels.scope === 'ip')?.value).toBe(1);
    await expect(limit(deps, 'ip:b', 2, 'ip')).resolves.toBeUndefined();
  });
});

describe('clientIp', () => {
  const app = new Hono().get('/', (c) => c.text(clientIp(c, c.req.query('trust') === '1')));
  const ask = async (trust: boolean) =>
    await (
      await app.request(`/?trust=${trust ? 1 : 0}`, {
        headers: { 'x-forwarded-for': ' 203.0.113.9 , 10.0.0.1' },
      })
    ).text();

  it('takes the first X-Forwarded-For entry only when the proxy is trusted', async () => {
    expect(await ask(true)).toBe('203.0.113.9');
    expect(await ask(false)).toBe('local');
  });
});
