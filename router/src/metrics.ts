import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The router's metrics, on their own registry (several apps in one process do not collide). */
export function createMetrics(
  options: {
    liveSessions?: () => Promise<number>;
    /** Live previews by tier and node (node name, `''` off the docker tier), for `preview_live_placements`. */
    livePlacements?: () => Promise<Array<{ tier: string; node: string; count: number }>>;
    defaults?: boolean;
  } = {},
) {
  const registry = new Registry();
  if (options.defaults) collectDefaultMetrics({ register: registry, prefix: 'preview_router_' });
  const { liveSessions, livePlacements } = options;
  return {
    registry,
    httpRequests: new Counter({
      name: 'preview_http_requests_total',
      help: 'API requests by route and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'preview_http_request_duration_seconds',
      help: 'API request latency',
      labelNames: ['method', 'route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    creates: new Counter({
      name: 'preview_creates_total',
      help: 'Preview placements by tier and outcome',
      labelNames: ['tier', 'outcome'] as const,
      registers: [registry],
    }),
    fallbacks: new Counter({
      name: 'preview_placement_fallbacks_total',
      help: 'Tier create failures that fell through to the next tier',
      labelNames: ['tier'] as const,
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'preview_rate_limited_total',
      help: 'Requests refused by the rate limiter',
      labelNames: ['scope'] as const,
      registers: [registry],
    }),
    proxyRequests: new Counter({
      name: 'preview_proxy_requests_total',
      help: 'Requests through the preview proxy by outcome',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry],
    }),
    jobRuns: new Counter({
      name: 'preview_job_runs_total',
      help: 'Scheduled job runs',
      labelNames: ['job', 'outcome'] as const,
      registers: [registry],
    }),
    retentionPurges: new Counter({
      name: 'preview_retention_purges_total',
      help: 'Retention job verdicts on idle projects: purged, or kept (used, live, absent) or error',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    apiErrors: new Counter({
      name: 'preview_api_errors_total',
      help: 'API error answers by wire code and HTTP status',
      labelNames: ['code', 'status'] as const,
      registers: [registry],
    }),
    stateChanges: new Counter({
      name: 'preview_state_changes_total',
      help: 'Preview state changes this replica made, by new state (suspended: suspensions, migrating: migrations, ready after suspended: wakes)',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    wakes: new Counter({
      name: 'preview_wakes_total',
      help: 'Suspended previews resumed (an open, an edit, a page view, an API call)',
      registers: [registry],
    }),
    editUpdate: new Histogram({
      name: 'preview_edit_update_seconds',
      help: "Edit to update: from a batch applied in the sandbox to the dev server's HMR update or reload (the daemon's hmr report)",
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [registry],
    }),
    orphansReaped: new Counter({
      name: 'preview_orphans_reaped_total',
      help: 'Sandboxes a live node reported without a live session (or on the wrong node), destroyed by reconcile',
      registers: [registry],
    }),
    livePlacements: new Gauge({
      name: 'preview_live_placements',
      help: 'Live previews by tier and node (all replicas)',
      labelNames: ['tier', 'node'] as const,
      registers: [registry],
      async collect() {
        if (!livePlacements) return;
        this.reset();
        for (const p of await livePlacements()) this.set({ tier: p.tier, node: p.node }, p.count);
      },
    }),
    live: new Gauge({
      name: 'preview_live_sessions',
      help: 'Live preview sessions (all replicas)',
      registers: [registry],
      async collect() {
        if (liveSessions) this.set(await liveSessions());
      },
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
