import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertExprs, dashboardExprs, exportedSeries, promqlMetricNames } from './observability.ts';

/**
 * The Grafana dashboard, the alert rules and the README's metrics catalogue name only series the
 * code exports (the router's and the pool agent's prom-client registries, plus Prometheus's `up`).
 */
const REPO = resolve(import.meta.dirname, '..');
const DIR = join(REPO, 'docs/observability');

describe('observability files name only exported metrics', () => {
  it('every metric in the Grafana dashboard exists in a registry', async () => {
    const dashboard = JSON.parse(await readFile(join(DIR, 'grafana-dashboard.json'), 'utf8')) as unknown;
    const exprs = dashboardExprs(dashboard);
    expect(exprs.length).toBeGreaterThan(15);
    const known = await exportedSeries();
    const unknown = exprs.flatMap((e) =>
      promqlMetricNames(e)
        .filter((n) => !known.has(n))
        .map((n) => `${n} in ${e}`),
    );
    expect(unknown).toEqual([]);
    // Each exported preview_* metric appears on the dashboard (a new one gets a panel).
    const used = new Set(exprs.flatMap(promqlMetricNames).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    const own = [...known]
      .filter((n) => /^preview_(?!router_)/.test(n))
      .map((n) => n.replace(/_(bucket|sum|count)$/, ''));
    expect([...new Set(own)].filter((n) => !used.has(n))).toEqual([]);
  });

  it('every metric in the alert rules exists; pool exhaustion, node loss and error rate are covered', async () => {
    const rules = alertExprs(await readFile(join(DIR, 'alerts.yml'), 'utf8'));
    const known = await exportedSeries();
    const unknown = rules.flatMap((r) =>
      promqlMetricNames(r.expr)
        .filter((n) => !known.has(n))
        .map((n) => `${n} in ${r.alert}`),
    );
    expect(unknown).toEqual([]);
    const names = rules.map((r) => r.alert);
    expect(names).toEqual(
      expect.arrayContaining(['PreviewWarmPoolEmpty', 'PreviewNodeDown', 'PreviewApiErrorRate']),
    );
  });

  it('every metric in the README catalogue exists, and every exported preview_* metric is in it', async () => {
    const readme = await readFile(join(REPO, 'README.md'), 'utf8');
    const section = /\n## Metrics\n([\s\S]*?)(?=\n## )/.exec(readme)?.[1] ?? '';
    // The first cell of each table row; `preview_router_*` stands for the default process metrics.
    const listed = new Set([...section.matchAll(/^\| `([a-z0-9_]+)` \|/gm)].map((m) => m[1]!));
    expect(listed.size).toBeGreaterThan(10);
    const known = await exportedSeries();
    const base = new Set([...known].map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    expect([...listed].filter((n) => !known.has(n) && !base.has(n))).toEqual([]);
    const own = [...base].filter((n) => /^preview_(?!router_)/.test(n));
    expect(own.filter((n) => !listed.has(n))).toEqual([]);
  });
});

describe('the checker', () => {
  it('finds the metric names of an expression and leaves labels, strings, durations and functions out', () => {
    expect(
      promqlMetricNames(
        'histogram_quantile(0.99, sum by (le, route) (rate(preview_http_request_duration_seconds_bucket{job=~"$router_job",route="/v1/x"}[5m])))',
      ),
    ).toEqual(['preview_http_request_duration_seconds_bucket']);
    expect(
      promqlMetricNames(
        'sum(rate(a_total{x="y"}[5m])) / clamp_min(sum(rate(b_total[5m])), 1e-9) > 0.05 and on (instance) up == 0',
      ),
    ).toEqual(['a_total', 'b_total', 'up']);
  });

  it('an invented metric is not among the exported series', async () => {
    const known = await exportedSeries();
    expect(known.has('preview_creates_total')).toBe(true);
    expect(known.has('preview_agent_claim_seconds_bucket')).toBe(true);
    expect(known.has('preview_router_process_cpu_seconds_total')).toBe(true);
    expect(known.has('preview_invented_widgets_total')).toBe(false);
    expect(
      promqlMetricNames('rate(preview_invented_widgets_total[5m])').filter((n) => !known.has(n)),
    ).toEqual(['preview_invented_widgets_total']);
  });
});
