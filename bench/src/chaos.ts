/**
 * `npm run bench -- chaos [--cycles 1000] [--concurrency 16] [--faults agent,container,router,redis,postgres,dockerd]
 * [--fault-every-ms 12000] [--max-minutes M]`: issue 16's chaos run (no cycle starts after M minutes). Cycles of create → ready → edit → suspend → resume
 * → edit → destroy run `concurrency` at a time through a loopback balancer in front of two router
 * replica processes, placed on two real pool agents (Docker) and, on overflow, on the fly tier's fake
 * Machines API; meanwhile a fault chosen at random among `--faults` is injected every
 * `--fault-every-ms` (± half): kill -9 of an agent (restarted under its name), a preview's container
 * killed, `dockerd` restarted, a router replica killed (restarted on its port), the bench's Redis or
 * Postgres restarted. Every request is retried through failures (an idempotency key makes a repeated
 * create the same preview).
 *
 * At the end (after a settle period for reconcile, the schema janitor and the fly tier): orphan
 * containers (a claimed container of the bench's agents whose session is not live), orphan schemas
 * (`preview_*` schemas whose session is not live), orphan fake-Fly machines (not destroyed, of no
 * live session), sessions neither `ended` nor `ready`, and lost edits (an edit acked `persisted`
 * whose content is not in the session's stored files). `replace_p50_ms`: from a fault that took a
 * preview's sandbox away to that preview `ready` on another placement.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from '@preview/router/testkit/processes';
import { benchProject } from './_agent.ts';
import { type ChaosCluster, FAULTS, type Fault, startChaosCluster } from './_chaos-cluster.ts';
import { percentile, round1 } from './stats.ts';

function numArg(args: string[], name: string, def: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

function faultsArg(args: string[]): Fault[] {
  const i = args.indexOf('--faults');
  if (i < 0) return [...FAULTS];
  const names = String(args[i + 1] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names)
    if (!(FAULTS as readonly string[]).includes(n))
      throw new Error(`--faults: unknown fault "${n}" (known: ${FAULTS.join(', ')})`);
  return names as Fault[];
}

const TEMPLATES = join(import.meta.dirname, '../../templates');
const template = (name: string, file: string) => readFileSync(join(TEMPLATES, name, file), 'utf8');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(Math.random() * xs.length)];

/**
 * A full-stack project with a database (its own schema): the express-pg template's package.json and
 * lockfile (so no sandbox installs anything), with a server of `node:http` and `pg` (the fake Fly
 * machines resolve `pg` from the repository's node_modules).
 */
const dbFiles = (n: number) => ({
  'package.json': template('express-pg', 'package.json'),
  'package-lock.json': template('express-pg', 'package-lock.json'),
  'server.js': `import http from 'node:http';
import pg from 'pg';
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
http.createServer(async (_req, res) => {
  try {
    const { rows } = await pool.query('SELECT current_user AS u');
    res.end('chaos ${n} ' + rows[0].u);
  } catch (e) { res.statusCode = 500; res.end(String(e)); }
}).listen(Number(process.env.PORT ?? 3000), '0.0.0.0');
`,
});

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`HTTP ${status}: ${body.slice(0, 300)}`);
  }
}

interface View {
  id: string;
  state: string;
  tier?: string;
  placement?: unknown;
}

interface Stats {
  requests: number;
  retries: number;
  recreated: number;
  failedCycles: number;
  errors: Map<string, number>;
}

/** The API as a retrying client: network errors, 5xx, 409 and 429 are retried until `deadline`. */
function apiClient(c: ChaosCluster, stats: Stats) {
  const once = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    stats.requests++;
    const res = await fetch(`${c.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${c.jwt}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    if (res.status >= 300) throw new HttpFailure(res.status, text);
    return text ? (JSON.parse(text) as unknown) : undefined;
  };
  const retrying = async <T>(
    what: string,
    deadline: number,
    fn: () => Promise<T>,
    retryable: (e: unknown) => boolean = () => true,
  ): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        const key = e instanceof HttpFailure ? `${what} ${e.status}` : `${what} ${(e as Error).name}`;
        stats.errors.set(key, (stats.errors.get(key) ?? 0) + 1);
        if (!retryable(e) || Date.now() > deadline) throw e;
        stats.retries++;
        await sleep(Math.min(2_000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
  };
  const transient = (e: unknown) =>
    !(e instanceof HttpFailure) || e.status >= 500 || e.status === 409 || e.status === 429;
  return { once, retrying, transient };
}

export default async function chaos(args: string[]): Promise<object> {
  const cycles = numArg(args, 'cycles', 1000);
  const concurrency = numArg(args, 'concurrency', 16);
  const faultEveryMs = numArg(args, 'fault-every-ms', 12_000);
  const faults = faultsArg(args);
  // No new cycle starts after this long (the result says how many ran). @default unlimited
  const maxMs = numArg(args, 'max-minutes', 1e9) * 60_000;
  const c = await startChaosCluster({ slots: 6, warmPool: 'express-pg=3,vite-vanilla=1', flyMachines: 6 });
  const stats: Stats = { requests: 0, retries: 0, recreated: 0, failedCycles: 0, errors: new Map() };
  const api = apiClient(c, stats);
  const runId = randomBytes(4).toString('hex');
  const logDir = join(tmpdir(), `chaos-logs-${runId}`);
  /** Per session: path → the content of its last edit acked `persisted`. */
  const acked = new Map<string, Map<string, string>>();
  const sessions = new Set<string>();
  const tiers = new Map<string, number>();
  const failures: string[] = [];
  const replaceMs: number[] = [];
  const injected: Array<{ fault: Fault; at: number; took: number; previews: number }> = [];
  let done = 0;
  let next = 0;
  const t0 = Date.now();

  const view = (id: string) => api.once('GET', `/v1/previews/${id}`) as Promise<View>;

  /** Waits until the preview is `ready`; a `failed` one that stays failed is returned as such. */
  const settle = async (id: string, deadline: number): Promise<View> => {
    let failedSince = 0;
    for (;;) {
      const v = await api.retrying('get', deadline, () => view(id), api.transient);
      if (v.state === 'ready' || v.state === 'ended') return v;
      if (v.state === 'failed') {
        failedSince ||= Date.now();
        if (Date.now() - failedSince > 20_000) return v;
      } else failedSince = 0;
      if (Date.now() > deadline) throw new Error(`preview ${id} stuck ${v.state}`);
      await sleep(200);
    }
  };

  const destroy = (id: string, deadline: number) =>
    api.retrying('delete', deadline, () => api.once('DELETE', `/v1/previews/${id}`), api.transient);

  /** Creates the cycle's preview and waits for it ready; a preview that failed is removed and made again. */
  const createReady = async (n: number, deadline: number): Promise<string> => {
    // Three in four full-stack with a schema; one in four a Vite app.
    const files = n % 4 === 3 ? benchProject(`chaos ${n}`) : dbFiles(n);
    for (let attempt = 0; ; attempt++) {
      const key = `chaos-${runId}-${n}-${attempt}`;
      const created = (await api.retrying(
        'create',
        deadline,
        () => api.once('POST', '/v1/previews', { files, serverOnly: true }, { 'idempotency-key': key }),
        api.transient,
      )) as View;
      sessions.add(created.id);
      if (created.tier) tiers.set(created.tier, (tiers.get(created.tier) ?? 0) + 1);
      const v = await settle(created.id, deadline);
      if (v.state === 'ready') return created.id;
      stats.recreated++;
      await destroy(created.id, deadline);
    }
  };

  const edit = async (id: string, seq: number, deadline: number) => {
    const path = `notes/e${seq % 3}.txt`;
    const content = `${id} edit ${seq} ${randomBytes(4).toString('hex')}\n`;
    const batch = { type: 'batch', seq, ops: [{ op: 'put', path, content, encoding: 'utf8' }] };
    const r = (await api.retrying(
      'edit',
      deadline,
      () => api.once('PUT', `/v1/previews/${id}/files`, batch),
      api.transient,
    )) as { persisted?: { stage: string; seq: number } };
    if (r.persisted?.stage === 'persisted' && r.persisted.seq >= seq) {
      const m = acked.get(id) ?? new Map<string, string>();
      m.set(path, content);
      acked.set(id, m);
    }
  };

  /** Suspend or resume; a 409 (not in a state that allows it, e.g. moving) waits for ready and retries. */
  const act = async (id: string, action: 'suspend' | 'resume', deadline: number) => {
    for (;;) {
      try {
        await api.retrying(
          action,
          deadline,
          () => api.once('POST', `/v1/previews/${id}/${action}`),
          (e) => !(e instanceof HttpFailure) || e.status >= 500 || e.status === 429,
        );
        return;
      } catch (e) {
        if (!(e instanceof HttpFailure) || e.status !== 409 || Date.now() > deadline) throw e;
        const v = await api.retrying('get', deadline, () => view(id), api.transient);
        // Already there (a retried request that took effect before its answer was lost).
        if ((action === 'suspend' && v.state === 'suspended') || (action === 'resume' && v.state === 'ready'))
          return;
        await sleep(300);
      }
    }
  };

  const steps = new Map<string, number[]>();
  const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    const r = await fn();
    const xs = steps.get(step) ?? [];
    xs.push(performance.now() - t);
    steps.set(step, xs);
    return r;
  };
  const cycle = async (n: number) => {
    const deadline = Date.now() + 8 * 60_000;
    let id: string | undefined;
    try {
      id = await timed('create_ready', () => createReady(n, deadline));
      const p = id;
      await timed('edit', () => edit(p, 1, deadline));
      await timed('edit', () => edit(p, 2, deadline));
      await timed('suspend', () => act(p, 'suspend', deadline));
      await timed('resume', () => act(p, 'resume', deadline));
      await timed('edit', () => edit(p, 3, deadline));
      await timed('destroy', () => destroy(p, deadline));
      done++;
    } catch (e) {
      stats.failedCycles++;
      failures.push(`cycle ${n} (${id ?? 'no preview'}): ${(e as Error).message}`);
      if (id) await destroy(id, Date.now() + 120_000).catch(() => {});
    }
  };

  /** Follows the previews a fault took the sandbox of until each is ready on another placement. */
  const watchReplace = async (ids: string[], at: number) => {
    if (!ids.length) return;
    const before = new Map<string, string>();
    const rows = await c.db
      .query<{ id: string; placement: unknown; state: string }>(
        `SELECT id::text, placement, state FROM preview_sessions WHERE id = ANY($1::uuid[])`,
        [ids],
      )
      .catch(() => ({ rows: [] }));
    for (const r of rows.rows)
      if (r.state !== 'ended' && r.state !== 'stopping') before.set(r.id, JSON.stringify(r.placement));
    const end = at + 300_000;
    while (before.size && Date.now() < end) {
      await sleep(100);
      const now = await c.db
        .query<{ id: string; placement: unknown; state: string }>(
          `SELECT id::text, placement, state FROM preview_sessions WHERE id = ANY($1::uuid[])`,
          [[...before.keys()]],
        )
        .catch(() => undefined);
      for (const r of now?.rows ?? []) {
        if (r.state === 'ended' || r.state === 'stopping') before.delete(r.id);
        else if (
          (r.state === 'ready' || r.state === 'suspended') &&
          JSON.stringify(r.placement) !== before.get(r.id)
        ) {
          replaceMs.push(Date.now() - at);
          before.delete(r.id);
        }
      }
    }
  };

  const watchers: Promise<void>[] = [];
  let running = true;
  const injector = (async () => {
    if (!faults.length) return;
    // The dockerd restart stops every container of the machine: once, two thirds through the run.
    const others = faults.filter((f) => f !== 'dockerd');
    let dockerdDone = !faults.includes('dockerd');
    while (running) {
      await sleep(faultEveryMs / 2 + Math.random() * faultEveryMs);
      if (!running) break;
      const fault: Fault | undefined =
        !dockerdDone && done >= (cycles * 2) / 3 ? 'dockerd' : pick(others.length ? others : faults);
      if (!fault) continue;
      if (fault === 'dockerd') dockerdDone = true;
      const at = Date.now();
      try {
        const taken = await c.inject(fault, pick);
        injected.push({ fault, at: at - t0, took: Date.now() - at, previews: taken.length });
        watchers.push(watchReplace(taken, at));
        process.stderr.write(
          `[chaos] ${Math.round((Date.now() - t0) / 1000)}s fault ${fault} (${taken.length} previews), cycles ${done}\n`,
        );
      } catch (e) {
        failures.push(`fault ${fault}: ${(e as Error).message}`);
      }
    }
  })();

  // Ctrl-C (or a timeout's SIGTERM) still takes the cluster down: no process or container is left.
  const interrupted = async () => {
    running = false;
    await c.close({ logDir });
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const progress = setInterval(() => {
    process.stderr.write(
      `[chaos] ${Math.round((Date.now() - t0) / 1000)}s cycles ${done}/${cycles} failed ${stats.failedCycles} retries ${stats.retries}\n`,
    );
  }, 15_000);
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < cycles && Date.now() - t0 < maxMs) await cycle(next++);
      }),
    );
    running = false;
    await injector;
    await Promise.all(watchers);
    clearInterval(progress);
    const durationS = round1((Date.now() - t0) / 1000);
    const end = await finalChecks(c, sessions, acked);
    const byFault = Object.fromEntries(FAULTS.map((f) => [f, injected.filter((x) => x.fault === f).length]));
    return {
      cycles: done,
      faults: injected.length,
      orphan_containers: end.orphanContainers,
      orphan_schemas: end.orphanSchemas,
      orphan_machines: end.orphanMachines,
      lost_edits: end.lostEdits,
      replace_p50_ms: round1(percentile(replaceMs, 50)),
      replace_p99_ms: round1(percentile(replaceMs, 99)),
      replaced: replaceMs.length,
      stuck_sessions: end.stuck,
      sessions: sessions.size,
      failed_cycles: stats.failedCycles,
      recreated: stats.recreated,
      requests: stats.requests,
      retries: stats.retries,
      faults_by_kind: byFault,
      step_p50_ms: Object.fromEntries([...steps].map(([k, v]) => [k, round1(percentile(v, 50))])),
      step_p99_ms: Object.fromEntries([...steps].map(([k, v]) => [k, round1(percentile(v, 99))])),
      tiers: Object.fromEntries(tiers),
      duration_s: durationS,
      concurrency,
      errors: Object.fromEntries(stats.errors),
      failures: failures.slice(0, 20),
      details: end.details,
    };
  } finally {
    running = false;
    clearInterval(progress);
    await c.close({ logDir });
    process.stderr.write(`[chaos] process logs in ${logDir}\n`);
  }
}

/**
 * The end state, once reconcile and the janitors had their time (polled until clean, at most
 * three minutes): orphans, stuck sessions and lost edits.
 */
async function finalChecks(
  c: ChaosCluster,
  sessions: Set<string>,
  acked: Map<string, Map<string, string>>,
): Promise<{
  orphanContainers: number;
  orphanSchemas: number;
  orphanMachines: number;
  stuck: number;
  lostEdits: number;
  details: string[];
}> {
  const q = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) =>
    until(
      'the database',
      async () =>
        (await c.db
          .query<T>(sql, params)
          .then((r) => r.rows)
          .catch(() => undefined)) as T[] | undefined,
      120_000,
    );
  const measure = async () => {
    const live = new Set(
      (
        await q<{ id: string }>(
          `SELECT id::text FROM preview_sessions WHERE state NOT IN ('ended', 'failed', 'stopping')`,
        )
      ).map((r) => r.id),
    );
    const containers = (await c.containers()).filter((x) => {
      const id = c.previewOf(x);
      return id && !live.has(id);
    });
    const schemas = await q<{ nspname: string }>(
      `SELECT n.nspname FROM pg_namespace n
        WHERE n.nspname LIKE 'preview\\_%'
          AND NOT EXISTS (SELECT 1 FROM preview_schemas s JOIN preview_sessions p ON p.id = s.preview_id
                           WHERE s.schema_name = n.nspname AND p.state NOT IN ('ended', 'failed', 'stopping'))`,
    );
    const machines = c.fly.machines().filter((m) => {
      if (m.state === 'destroyed') return false;
      const id = (m.config as { metadata?: Record<string, string> } | undefined)?.metadata?.['preview_id'];
      return !id || !live.has(id);
    });
    const stuck = await q<{ id: string; state: string }>(
      `SELECT id::text, state FROM preview_sessions WHERE state NOT IN ('ended', 'ready') AND id = ANY($1::uuid[])`,
      [[...sessions]],
    );
    return { containers, schemas, machines, stuck };
  };
  let m = await measure();
  const end = Date.now() + 180_000;
  while (
    Date.now() < end &&
    (m.containers.length || m.schemas.length || m.machines.length || m.stuck.length)
  ) {
    await sleep(2_000);
    m = await measure();
  }
  let lostEdits = 0;
  const details: string[] = [];
  for (const [id, paths] of acked) {
    const rows = await q<{ path: string; content: Buffer }>(
      'SELECT path, content FROM project_files WHERE preview_id = $1',
      [id],
    );
    const stored = new Map(rows.map((r) => [r.path, r.content.toString('utf8')]));
    for (const [path, content] of paths)
      if (stored.get(path) !== content) {
        lostEdits++;
        if (details.length < 20) details.push(`lost ${id} ${path}`);
      }
  }
  for (const x of m.containers.slice(0, 5)) details.push(`orphan container ${x.Names[0]} ${x.State}`);
  for (const x of m.schemas.slice(0, 5)) details.push(`orphan schema ${x.nspname}`);
  for (const x of m.machines.slice(0, 5)) details.push(`orphan machine ${x.id} ${x.state}`);
  for (const x of m.stuck.slice(0, 5)) details.push(`stuck session ${x.id} ${x.state}`);
  return {
    orphanContainers: m.containers.length,
    orphanSchemas: m.schemas.length,
    orphanMachines: m.machines.length,
    stuck: m.stuck.length,
    lostEdits,
    details,
  };
}
