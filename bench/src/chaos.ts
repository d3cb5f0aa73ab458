/**
 * `npm run bench -- chaos [--cycles 1000] [--concurrency 16] [--faults agent,container,router,redis,postgres,dockerd]
 * [--fault-every-ms 12000] [--max-minutes M]`: issue 16's chaos run (no cycle starts after M minutes). Cycles of create → ready → edit → suspend → resume
 * → edit → destroy run `concurrency` at a time through a loopback balancer in front of two router
 * replica processes, placed on two real pool agents (Docker) and, on overflow, on the fly tier's fake
 * Machines API; meanwhile a fault chosen at random among `--faults` is injected every
 * `--fault-every-ms` (± half): kill -9 of an agent (restarted under its name), a preview's container
 * killed, `dockerd` restarted, a router replica killed (restarted on its port), the bench's Redis or
 * Postgres restarted. Requests go through `_chaos-client.ts`: a broken connection (a replica killed)
 * is sent again at once through the balancer (`failovers`), 5xx and 429 are retried after Retry-After
 * or a backoff (an idempotency key makes a repeated create the same preview), and a preview seen
 * `failed` gives its cycle up: the rest of its steps are skipped, it is deleted, and the cycle counts
 * in `failed_cycles` / `failed_by_reason` and is replaced by a new one (at most `--cycles`
 * replacements), so `cycles` counts completed cycles. The dockerd restart runs once, two thirds
 * through the run (of its cycles, or of `--max-minutes`).
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
import { chaosClient, editContent, newClientStats, PreviewGone, reasonKind } from './_chaos-client.ts';
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
const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

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

/** How long the cluster's teardown may take before the result is given anyway, ms. */
const CLOSE_TIMEOUT_MS = 120_000;

export default async function chaos(args: string[]): Promise<object> {
  const cycles = numArg(args, 'cycles', 1000);
  const concurrency = numArg(args, 'concurrency', 16);
  const faultEveryMs = numArg(args, 'fault-every-ms', 12_000);
  const faults = faultsArg(args);
  // No new cycle starts after this long (the result says how many ran). @default unlimited
  const maxMs = numArg(args, 'max-minutes', 1e9) * 60_000;
  const c = await startChaosCluster({ slots: 6, warmPool: 'express-pg=3,vite-vanilla=1', flyMachines: 6 });
  const stats = newClientStats();
  const api = chaosClient({ url: c.url, jwt: c.jwt, stats });
  const runId = randomBytes(4).toString('hex');
  const logDir = join(tmpdir(), `chaos-logs-${runId}`);
  /** Per session: path → the content of its last edit acked `persisted`. */
  const acked = new Map<string, Map<string, string>>();
  const sessions = new Set<string>();
  const tiers = new Map<string, number>();
  const failures: string[] = [];
  /** Given-up cycles by their reason (ids taken out). */
  const failedByReason = new Map<string, number>();
  let failedCycles = 0;
  const replaceMs: number[] = [];
  const injected: Array<{ fault: Fault; at: number; took: number; previews: number }> = [];
  let done = 0;
  let next = 0;
  const t0 = Date.now();

  /** Creates the cycle's preview (idempotently) and waits for it ready; `onId` learns its id at once. */
  const createReady = async (n: number, deadline: number, onId: (id: string) => void): Promise<string> => {
    // Three in four full-stack with a schema; one in four a Vite app.
    const files = n % 4 === 3 ? benchProject(`chaos ${n}`) : dbFiles(n);
    const created = await api.create({ files, serverOnly: true }, `chaos-${runId}-${n}`, deadline);
    onId(created.id);
    sessions.add(created.id);
    if (created.tier) tiers.set(created.tier, (tiers.get(created.tier) ?? 0) + 1);
    await api.settle(created.id, deadline);
    return created.id;
  };

  const edit = async (id: string, seq: number, deadline: number) => {
    const path = `notes/e${seq % 3}.txt`;
    const content = editContent(id, seq);
    if ((await api.edit(id, seq, path, content, deadline)) !== 'persisted') return;
    const m = acked.get(id) ?? new Map<string, string>();
    m.set(path, content);
    acked.set(id, m);
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
  /**
   * One cycle. A preview seen `failed` (or ended) gives the cycle up: its remaining steps are
   * skipped, it is deleted as a user would, and its reason counted; its acked edits and its
   * sandbox are still checked at the end like every other.
   */
  const cycle = async (n: number) => {
    const deadline = Date.now() + 8 * 60_000;
    let id: string | undefined;
    try {
      const p = await timed('create_ready', () => createReady(n, deadline, (x) => (id = x)));
      await timed('edit', () => edit(p, 1, deadline));
      await timed('edit', () => edit(p, 2, deadline));
      await timed('suspend', () => api.act(p, 'suspend', deadline));
      await timed('resume', () => api.act(p, 'resume', deadline));
      await timed('edit', () => edit(p, 3, deadline));
      await timed('destroy', () => api.destroy(p, deadline));
      done++;
    } catch (e) {
      failedCycles++;
      const reason = e instanceof PreviewGone ? `${e.state}: ${e.reason}` : (e as Error).message;
      const kind = reasonKind(reason);
      failedByReason.set(kind, (failedByReason.get(kind) ?? 0) + 1);
      failures.push(`cycle ${n} (${id ?? 'no preview'}): ${reason}`);
      if (id) await api.destroy(id, Date.now() + 120_000).catch(() => {});
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
  // The dockerd restart stops every container of the machine: once, two thirds through the run (of
  // its cycles, or of --max-minutes when that comes first), at once when due, not at the next tick.
  let dockerdDone = !faults.includes('dockerd');
  const dockerdDue = () => !dockerdDone && (done >= (cycles * 2) / 3 || Date.now() - t0 >= (maxMs * 2) / 3);
  const injector = (async () => {
    if (!faults.length) return;
    const others = faults.filter((f) => f !== 'dockerd');
    while (running) {
      const tick = Date.now() + faultEveryMs / 2 + Math.random() * faultEveryMs;
      while (running && Date.now() < tick && !dockerdDue()) await sleep(250);
      if (!running) break;
      const fault: Fault | undefined = dockerdDue() ? 'dockerd' : pick(others.length ? others : faults);
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
      `[chaos] ${Math.round((Date.now() - t0) / 1000)}s cycles ${done}/${cycles} failed ${failedCycles} retries ${stats.retries} failovers ${sum(stats.failovers)}\n`,
    );
  }, 15_000);
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        // A given-up cycle is replaced by a new one (at most `cycles` replacements in all), so a run
        // completes `cycles` cycles unless it runs out of time or replacements.
        while (next - failedCycles < cycles && next < 2 * cycles && Date.now() - t0 < maxMs)
          await cycle(next++);
      }),
    );
    running = false;
    await injector;
    await Promise.all(watchers);
    clearInterval(progress);
    const durationS = round1((Date.now() - t0) / 1000);
    const end = await finalChecks(c, sessions, acked);
    const byFault = Object.fromEntries(FAULTS.map((f) => [f, injected.filter((x) => x.fault === f).length]));
    if (faults.includes('dockerd') && !byFault['dockerd'])
      failures.unshift('fault dockerd: never ran (the run ended before two thirds of it)');
    const result = {
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
      cycles_started: next,
      failed_cycles: failedCycles,
      failed_by_reason: Object.fromEntries(failedByReason),
      requests: stats.requests,
      retries: stats.retries,
      failovers: Object.fromEntries(stats.failovers),
      edits_taken_unacked: stats.editsTakenUnacked,
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
    // Written before the teardown, which waits on processes a fault may have left half-stopped.
    process.stderr.write(`[chaos] result ${JSON.stringify(result)}\n`);
    return result;
  } finally {
    running = false;
    clearInterval(progress);
    // Bounded: a run of an hour is not lost to a teardown that hangs (seen once: 8 minutes and no line).
    const closed = await Promise.race([
      c.close({ logDir }).then(() => true),
      sleep(CLOSE_TIMEOUT_MS).then(() => false),
    ]);
    if (!closed) process.stderr.write(`[chaos] teardown not done after ${CLOSE_TIMEOUT_MS} ms; leaving it\n`);
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
