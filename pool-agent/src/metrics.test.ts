import { CapacityError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { AgentMetrics } from './metrics.ts';

describe('AgentMetrics', () => {
  it('counts claims by path and outcome, env claims, and observes the duration', async () => {
    const m = new AgentMetrics({ previewStates: () => [], warmCounts: () => ({}) });
    await m.timeClaim(
      async () => ({ warm: true, ms: 120 }),
      (r) => ({ ...r, withEnv: true }),
    );
    await m.timeClaim(
      async () => ({ warm: false, ms: 2500 }),
      (r) => ({ ...r, withEnv: false }),
    );
    await expect(
      m.timeClaim(
        async () => {
          throw new CapacityError('capacity', 'full');
        },
        () => ({ warm: true, ms: 0, withEnv: false }),
      ),
    ).rejects.toThrow('full');
    await expect(
      m.timeClaim(
        async () => {
          throw new Error('boom');
        },
        () => ({ warm: true, ms: 0, withEnv: false }),
      ),
    ).rejects.toThrow('boom');
    const { body } = await m.text();
    expect(body).toMatch(/preview_agent_claims_total\{path="warm",outcome="ok"\} 1/);
    expect(body).toMatch(/preview_agent_claims_total\{path="cold",outcome="ok"\} 1/);
    expect(body).toMatch(/preview_agent_claims_total\{path="unknown",outcome="capacity"\} 1/);
    expect(body).toMatch(/preview_agent_claims_total\{path="unknown",outcome="internal"\} 1/);
    expect(body).toMatch(/preview_agent_env_claims_total\{path="warm"\} 1/);
    expect(body).not.toMatch(/preview_agent_env_claims_total\{path="cold"\}/);
    expect(body).toMatch(/preview_agent_claim_seconds_bucket\{le="0.2",path="warm"\} 1/);
    expect(body).toMatch(/preview_agent_claim_seconds_bucket\{le="2",path="cold"\} 0/);
  });

  it('reads the preview states and warm counts when scraped', async () => {
    let states = ['ready', 'ready', 'failed'];
    const m = new AgentMetrics({ previewStates: () => states, warmCounts: () => ({ 'vite-react': 2 }) });
    let { body } = await m.text();
    expect(body).toMatch(/preview_agent_previews\{state="ready"\} 2/);
    expect(body).toMatch(/preview_agent_previews\{state="failed"\} 1/);
    expect(body).toMatch(/preview_agent_warm\{template="vite-react"\} 2/);
    states = ['suspended'];
    ({ body } = await m.text());
    expect(body).not.toMatch(/preview_agent_previews\{state="ready"\}/);
    expect(body).toMatch(/preview_agent_previews\{state="suspended"\} 1/);
  });
});
