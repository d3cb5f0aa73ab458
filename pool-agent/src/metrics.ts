import { PreviewError } from '@preview/tiers';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What the agent's gauges read when scraped. */
export interface MetricsSources {
  /** The state kind of every preview this node serves. */
  previewStates(): Iterable<string>;
  /** Ready warm sandboxes per template. */
  warmCounts(): Record<string, number>;
}

/** A finished claim as the metrics see it. */
export interface ClaimOutcome {
  warm: boolean;
  /** Claim to ready, ms. */
  ms: number;
  /** Whether the claim carried an app environment (e.g. DATABASE_URL). */
  withEnv: boolean;
}

/**
 * The agent's Prometheus metrics, in a registry of its own (several agents may share a process):
 * `preview_agent_claims_total{path,outcome}`, `preview_agent_env_claims_total{path}`,
 * `preview_agent_claim_seconds{path}`, `preview_agent_previews{state}`, `preview_agent_warm{template}`.
 *
 * @example
 * const metrics = new AgentMetrics({ previewStates: () => [], warmCounts: () => ({}) });
 * const r = await metrics.timeClaim(() => claims.claim(body), (r) => ({ warm: r.warm, ms: r.ms, withEnv: false }));
 */
export class AgentMetrics {
  readonly registry = new Registry();
  readonly #claims: Counter<'path' | 'outcome'>;
  readonly #envClaims: Counter<'path'>;
  readonly #claimSeconds: Histogram<'path'>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.#claims = new Counter({
      name: 'preview_agent_claims_total',
      help: 'Claims by path (warm / cold) and outcome',
      labelNames: ['path', 'outcome'] as const,
      registers,
    });
    this.#claimSeconds = new Histogram({
      name: 'preview_agent_claim_seconds',
      help: 'Claim to ready, by path',
      labelNames: ['path'] as const,
      buckets: [0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.#envClaims = new Counter({
      name: 'preview_agent_env_claims_total',
      help: 'Successful claims that carried an app environment (e.g. DATABASE_URL), by path (warm / cold)',
      labelNames: ['path'] as const,
      registers,
    });
    new Gauge({
      name: 'preview_agent_previews',
      help: 'Previews by state',
      labelNames: ['state'] as const,
      registers,
      collect() {
        this.reset();
        for (const state of sources.previewStates()) this.inc({ state });
      },
    });
    new Gauge({
      name: 'preview_agent_warm',
      help: 'Ready warm sandboxes by template',
      labelNames: ['template'] as const,
      registers,
      collect() {
        this.reset();
        for (const [template, n] of Object.entries(sources.warmCounts())) this.set({ template }, n);
      },
    });
  }

  /** Runs a claim and counts it: by path and outcome, its duration, and whether it carried an environment. */
  async timeClaim<T>(run: () => Promise<T>, outcome: (r: T) => ClaimOutcome): Promise<T> {
    try {
      const r = await run();
      const o = outcome(r);
      const path = o.warm ? 'warm' : 'cold';
      this.#claims.inc({ path, outcome: 'ok' });
      if (o.withEnv) this.#envClaims.inc({ path });
      this.#claimSeconds.observe({ path }, o.ms / 1000);
      return r;
    } catch (e) {
      this.#claims.inc({ path: 'unknown', outcome: e instanceof PreviewError ? e.code : 'internal' });
      throw e;
    }
  }

  /** The exposition text and its content type, for `GET /metrics`. */
  async text(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
