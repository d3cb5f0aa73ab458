import { AgentMetrics } from '@preview/pool-agent';
import { createMetrics } from '@preview/router';
import type { Registry } from 'prom-client';
import { parse } from 'yaml';

/**
 * PromQL words that are not metric names: aggregations, functions, modifiers and operators
 * (https://prometheus.io/docs/prometheus/latest/querying/). Extend it when a query uses another.
 */
const PROMQL_WORDS = new Set([
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'group',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset',
  'rate', 'irate', 'increase', 'delta', 'idelta', 'deriv', 'histogram_quantile', 'clamp_min', 'clamp_max',
  'clamp', 'abs', 'ceil', 'floor', 'round', 'label_replace', 'label_join', 'absent', 'absent_over_time',
  'avg_over_time', 'max_over_time', 'min_over_time', 'sum_over_time', 'count_over_time', 'changes',
  'resets', 'time', 'vector', 'scalar', 'sort', 'sort_desc', 'inf', 'nan',
]); // biome-ignore format: a word list

/**
 * The metric names a PromQL expression reads: what is left once strings, label matchers, durations,
 * `by (...)` / `without (...)` label lists and PromQL's own words are taken out.
 *
 * @example promqlMetricNames('sum by (le) (rate(preview_agent_claim_seconds_bucket{path="warm"}[5m]))')
 * // ['preview_agent_claim_seconds_bucket']
 */
export function promqlMetricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*/g))
    if (!PROMQL_WORDS.has(m[0].toLowerCase())) names.add(m[0]);
  return [...names];
}

/** Every `expr` of a Grafana dashboard (panels, rows' nested panels and their targets). */
export function dashboardExprs(dashboard: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        if (k === 'expr' && typeof x === 'string') out.push(x);
        else walk(x);
      }
  };
  walk(dashboard);
  return out;
}

/** Every rule's `expr` of a Prometheus rule file (`groups[].rules[].expr`), with the rule's name. */
export function alertExprs(yamlText: string): Array<{ alert: string; expr: string }> {
  const doc = parse(yamlText) as {
    groups?: Array<{ rules?: Array<{ alert?: string; record?: string; expr?: unknown }> }>;
  };
  return (doc.groups ?? []).flatMap((g) =>
    (g.rules ?? []).map((r) => ({ alert: r.alert ?? r.record ?? '?', expr: String(r.expr ?? '') })),
  );
}

/** Series Prometheus adds itself for every scrape target (not in any registry of ours). */
export const PROMETHEUS_SERIES = ['up', 'scrape_duration_seconds', 'scrape_samples_scraped'] as const;

async function seriesOf(registry: Registry): Promise<string[]> {
  const out: string[] = [];
  for (const m of await registry.getMetricsAsJSON()) {
    if (String(m.type) === 'histogram') out.push(`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`);
    else if (String(m.type) === 'summary') out.push(m.name, `${m.name}_sum`, `${m.name}_count`);
    else out.push(m.name);
  }
  return out;
}

/**
 * The series names the code exports: the router's registry (with its default process metrics,
 * `preview_router_*`, as main.ts turns them on), a pool agent's registry, and Prometheus's own.
 */
export async function exportedSeries(): Promise<Set<string>> {
  const router = createMetrics({ defaults: true });
  const agent = new AgentMetrics({ previewStates: () => [], warmCounts: () => ({}) });
  return new Set([
    ...(await seriesOf(router.registry)),
    ...(await seriesOf(agent.registry)),
    ...PROMETHEUS_SERIES,
  ]);
}
