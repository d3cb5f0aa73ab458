/**
 * `npm run bench -- scale [--previews 500] [--agents 5] [--routers 2] [--warm 4] [--concurrency 6]
 * [--users N] [--ops-per-s 5000] [--sync-s 10] [--tick-ms 100] [--memory-mib 256] [--create-s 0]
 * [--sandbox-cpu-shares N] [--cpu-prof DIR]`: many live previews on one machine.
 *
 * Real processes as deployed: `--routers` router replicas (`router/src/main.ts`) on one fresh Postgres
 * database and one Redis prefix, `--agents` pool agents (`pool-agent/src/main.ts`, each its own node
 * name, registered alternately with each replica through the join token), their sandboxes on the
 * Docker engine from `preview-base:dev` with the real preview-daemon. The workload is minimal so that
 * memory goes to the count: each preview is a Node `http` server of a few lines (`server.js`, no
 * package.json, no dependencies), which the router classifies as a Node server (template
 * `express-pg`, no database) and the daemon runs as `node server.js` behind its proxy; the agents'
 * warm pools (`--warm` per agent) hold that template.
 *
 * Phases, in order, and what the result reports:
 * 1. Creates: `--previews` creates through the router API (`POST /v1/previews` with a user's JWT, the
 *    replicas in turn, `--concurrency` at a time), each watched until `ready` (the users' list).
 *    `create_per_s`: previews ready per second from the first create to the last ready. With
 *    `--create-s` the creates stop after that many seconds (reported as the limit met).
 * 2. Memory: once the warm pools refilled, `mib_per_preview` is what each sandbox costs the host (its
 *    container's cgroup memory as `docker stats` shows it, its containerd shim and docker-proxy PSS)
 *    plus the routers' and agents' growth since before the creates per live preview; the parts are
 *    reported apart, and the drop of MemAvailable per preview beside them (other work moves it too).
 * 3. Sync fan-out: one sync WebSocket per preview (`PreviewClient` in Node, the replicas in turn);
 *    `--ops-per-s` file writes a second spread over the previews for `--sync-s` seconds (every
 *    `--tick-ms` the ops due, round-robin, one batch per preview and tick), each batch counted by its
 *    `persisted` ack; `lost_ops` = ops sent − ops acked persisted; `ops_per_s` = ops acked per second
 *    from the first send to the last ack.
 * 4. Proxy: every preview's page through the preview proxy of the other replica (Host
 *    `<id>.preview.localhost`, the previewUrl's token exchanged for the cookie): `answering` counts
 *    200s carrying the preview's own marker.
 *
 * Throughout phases 1 and 3 a probe sends `GET /v1/previews/:id` and `GET /v1/previews?limit=50`
 * to the replicas in turn, one at a time, from a worker thread of its own (the creates' work in this
 * process does not delay it): `api_p50_ms` / `api_p99_ms` (goal p99 ≤ 50 ms).
 * `router_side_create_phase` / `router_side_sync_phase`: the same routes as the replicas' own latency
 * histogram (`preview_http_request_duration_seconds`) has them over each phase (the probe's requests and
 * the users' list polls): requests, the share within 50 ms, the bucket bound of the p99, and each
 * replica's own event-loop delay over the phase (p99, max: how long a request waits before its
 * router runs it).
 * `bench_loop_delay_create_phase`: this process's own event-loop delay over phase 1 (p99, max): the
 * probe's client stalls with the machine, and a probe answer is never faster than its client.
 * `first_limit`: the first thing that failed or passed its limit as the count rose (a create refused
 * or failed, a preview not ready, the probe's rolling p99 over 50 ms, host memory under 2 GiB
 * available, a process that exited, a sync socket that did not open, lost ops, a page not answering),
 * with the live count then; `"none"` when nothing did. `ramp` has the probe's p99 and host memory at
 * each tenth of the count.
 *
 * `--sandbox-cpu-shares N`: the agents' `SANDBOX_CPU_SHARES` (the sandboxes' CPU weight against the
 * control plane's; 0 leaves them in the engine's default cgroup). @default the agent's default (128)
 *
 * `--cpu-prof DIR`: the routers and agents run with `node --cpu-prof`, each writing a `.cpuprofile`
 * into DIR when it stops at the end of the run (open it in Chrome DevTools' Performance panel).
 *
 * Everything is removed at the end, also on failure: containers by the run's label, the network and
 * its egress rules, the database, the Redis keys. Develop with `--previews 20`; the full run (500)
 * needs ~20 GiB free and a quiet machine.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { PreviewClient, type SyncSession, type WebSocketConstructor } from '@preview/browser-runtime';
import { containerMemoryBytes } from '@preview/pool-agent';
import { hostGet } from '@preview/router/testkit/processes';
import { testDocker } from '@preview/testkit';
import { LIMITS } from '@preview/tiers';
import { WebSocket } from 'ws';
import { BENCH_LABEL, sleep } from './_agent.ts';
import { type Cluster, startCluster } from './_cluster.ts';
import { percentile, round1 } from './stats.ts';

const TEMPLATE = 'express-pg';
const API_BUDGET_MS = 50;
const MIN_AVAILABLE_MIB = 2048;

interface Flags {
  previews: number;
  agents: number;
  routers: number;
  warm: number;
  concurrency: number;
  users: number;
  opsPerS: number;
  syncS: number;
  memoryMiB: number;
  tickMs: number;
  createS: number;
  /** Agent `SANDBOX_CPU_SHARES`; -1 keeps the agent's default. */
  sandboxCpuShares: number;
  /** Where the routers and agents write CPU profiles; none when empty. */
  cpuProf: string;
}

function parseFlags(args: string[]): Flags {
  const num = (name: string, dflt: number) => {
    const i = args.indexOf(`--${name}`);
    if (i < 0) return dflt;
    const v = Number(args[i + 1]);
    if (!Number.isInteger(v) || v < 0)
      throw new Error(`--${name}: must be a whole number ≥ 0, got ${args[i + 1]}`);
    return v;
  };
  const previews = num('previews', 500);
  const at = args.indexOf('--cpu-prof');
  const cpuProf = at < 0 ? '' : (args[at + 1] ?? '');
  if (at >= 0 && (!cpuProf || cpuProf.startsWith('--')))
    throw new Error(`--cpu-prof: must name a directory, got ${args[at + 1]}`);
  return {
    previews,
    agents: num('agents', 5),
    routers: num('routers', 2),
    warm: num('warm', 4),
    concurrency: num('concurrency', 6),
    users: num('users', Math.max(1, Math.ceil(previews / 10))),
    opsPerS: num('ops-per-s', 5000),
    syncS: num('sync-s', 10),
    memoryMiB: num('memory-mib', 256),
    tickMs: Math.max(1, num('tick-ms', 100)),
    createS: num('create-s', 0),
    sandboxCpuShares: args.includes('--sandbox-cpu-shares') ? num('sandbox-cpu-shares', 0) : -1,
    cpuProf: cpuProf ? resolve(cpuProf) : '',
  };
}

/** The flags as the result reports them (`cpuProf` only when given). */
function flagsShown(f: Flags): Omit<Flags, 'cpuProf'> & { cpuProf?: string } {
  const { cpuProf, ...rest } = f;
  return cpuProf ? { ...rest, cpuProf } : rest;
}

const say = (line: string) => process.stderr.write(`${line}\n`);

/** The user's app: a Node http server answering every request with a page carrying `marker`. */
function appFiles(marker: string): Record<string, string> {
  return {
    'server.js': `const http = require('node:http');
const page = '<!doctype html><title>scale</title><p>${marker}</p>';
http
  .createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  })
  .listen(Number(process.env.PORT), process.env.HOST);
`,
  };
}

/** The host's MemAvailable, in MiB. */
function availableMiB(): number {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** A preview the bench created. */
interface Created {
  k: number;
  id: string;
  user: { id: string; jwt: string };
  marker: string;
  readyAt?: number;
  failed?: string;
}

/** The run's shared state: what exists, what broke first. */
class Run {
  readonly created: Created[] = [];
  readonly limits: Array<{ live: number; what: string }> = [];
  readonly ramp: Array<Record<string, number>> = [];
  ready = 0;
  phase = 'create';

  constructor(readonly c: Cluster) {}

  limit(what: string) {
    const live = this.ready;
    if (this.limits.length < 20) this.limits.push({ live, what });
    if (this.limits.length === 1) say(`scale: first limit at ${live} live: ${what}`);
  }

  /** Processes seen exited (each reported once). */
  readonly #exited = new Set<string>();

  /** A router or agent process exited: the run stops adding load (the rest is reported as is). */
  get broken(): boolean {
    return this.#exited.size > 0;
  }

  /** Any router or agent process that exited is a limit, with its exit and last output lines. */
  checkProcesses() {
    for (const p of [...this.c.routers.map((r) => r.proc), ...this.c.agents.map((a) => a.proc)])
      if ((p.child.exitCode !== null || p.child.signalCode !== null) && !this.#exited.has(p.name)) {
        this.#exited.add(p.name);
        this.limit(
          `${p.name} exited (${p.child.exitCode ?? p.child.signalCode}): ${p.lines.slice(-3).join(' | ').slice(0, 600)}`,
        );
      }
  }

  headers(u: { jwt: string }) {
    return { authorization: `Bearer ${u.jwt}`, 'content-type': 'application/json' };
  }
}

/** The routes the probe asks (as the router's latency histogram labels them). */
const PROBED_ROUTES = ['/v1/previews/:id', '/v1/previews'];

/** One read of the replicas' `/metrics`: the probed routes' histogram and each replica's event-loop delay. */
interface RouterRead {
  /** `preview_http_request_duration_seconds` of the probed routes (GET, summed over routes and replicas): cumulative count per bucket bound (ms). */
  buckets: Map<number, number>;
  /**
   * Each replica's event-loop delay since the previous read (prom-client's default metrics reset
   * their histogram at every scrape), ms: a request waits that long before the router runs it.
   */
  loop: Array<{ p99_ms: number; max_ms: number }>;
}

async function routerHistogram(c: Cluster): Promise<RouterRead> {
  const out = new Map<number, number>();
  const loop: RouterRead['loop'] = [];
  const gauge = (text: string, name: string) =>
    round1(
      Number(new RegExp(`^preview_router_${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? Number.NaN) * 1000,
    );
  for (const r of c.routers) {
    const text = await fetch(`${r.url}/metrics`)
      .then((res) => res.text())
      .catch(() => '');
    loop.push({
      p99_ms: gauge(text, 'nodejs_eventloop_lag_p99_seconds'),
      max_ms: gauge(text, 'nodejs_eventloop_lag_max_seconds'),
    });
    for (const m of text.matchAll(
      /^preview_http_request_duration_seconds_bucket\{le="([^"]+)",method="GET",route="([^"]+)"\} (\d+)$/gm,
    )) {
      if (!PROBED_ROUTES.includes(m[2]!)) continue;
      const le = m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]) * 1000;
      out.set(le, (out.get(le) ?? 0) + Number(m[3]));
    }
  }
  return { buckets: out, loop };
}

/**
 * What the routers themselves spent on the probed routes between two histogram reads: requests, the
 * share answered within the budget, and the bucket bound the 99th percentile falls under (ms).
 */
function routerSide(before: RouterRead, after: RouterRead) {
  const delta = [...after.buckets]
    .map(([le, n]) => [le, n - (before.buckets.get(le) ?? 0)] as const)
    .sort((a, b) => a[0] - b[0]);
  const total = delta.at(-1)?.[1] ?? 0;
  const within = delta.find(([le]) => le >= API_BUDGET_MS)?.[1] ?? 0;
  const p99 = delta.find(([, n]) => n >= 0.99 * total)?.[0];
  return {
    requests: total,
    within_budget_share: total ? round1((1000 * within) / total) / 1000 : null,
    p99_at_most_ms: p99 === undefined || !Number.isFinite(p99) ? null : p99,
    event_loop_delay: after.loop,
  };
}

/**
 * The probe's loop, in a worker thread of its own so that what this process does meanwhile (the
 * creates, their watchers) does not stall it: GET one preview, then list, on the replicas in turn,
 * one request at a time, 20 ms apart, after warming its own client up (`/healthz` of each replica,
 * not counted: the first fetch of a thread loads undici, and the first sample would time that). In: `{ routers }` once, then `{ preview: { id, headers } }`
 * per created preview, `'stop'`. Out: `{ path, ms, status }` per request (status 0: no answer).
 */
const PROBE_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const previews = [];
let stopped = false;
parentPort.on('message', (m) => {
  if (m === 'stop') stopped = true;
  else previews.push(m.preview);
});
(async () => {
  // The client warms up unmeasured: Node loads its fetch (undici) on the first call (~40 ms on an
  // idle machine, more on a busy one) and a replica's first request opens its connection.
  for (const base of workerData.routers)
    for (let i = 0; i < 3; i++) {
      const res = await fetch(base + '/healthz').catch(() => undefined);
      if (res) await res.arrayBuffer().catch(() => undefined);
    }
  let n = 0;
  while (!stopped) {
    const p = previews[Math.floor(Math.random() * previews.length)];
    if (p) {
      const base = workerData.routers[n++ % workerData.routers.length];
      for (const path of ['/v1/previews/' + p.id, '/v1/previews?limit=50']) {
        const t = performance.now();
        const res = await fetch(base + path, { headers: p.headers }).catch(() => undefined);
        if (res) await res.arrayBuffer().catch(() => undefined);
        parentPort.postMessage({ path, ms: performance.now() - t, status: res ? res.status : 0 });
      }
    }
    await new Promise((r) => setTimeout(r, p ? 20 : 50));
  }
  parentPort.close();
})();
`;

/** The API probe (PROBE_WORKER): its samples, tagged with the live count and phase when they arrive. */
function startProbe(run: Run) {
  const samples: Array<{ ms: number; live: number; phase: string }> = [];
  let flagged = false;
  const worker = new Worker(PROBE_WORKER, {
    eval: true,
    workerData: { routers: run.c.routers.map((r) => r.url) },
  });
  let given = 0;
  const feed = setInterval(() => {
    for (const p of run.created.slice(given))
      worker.postMessage({ preview: { id: p.id, headers: run.headers(p.user) } });
    given = run.created.length;
  }, 100);
  worker.on('message', (m: { path: string; ms: number; status: number }) => {
    if (m.status !== 200) run.limit(`probe GET ${m.path.split('?')[0]}: ${m.status || 'no answer'}`);
    samples.push({ ms: m.ms, live: run.ready, phase: run.phase });
    const recent = samples.slice(-200).map((s) => s.ms);
    if (!flagged && recent.length >= 200 && percentile(recent, 99) > API_BUDGET_MS) {
      flagged = true;
      run.limit(`API p99 ${round1(percentile(recent, 99))} ms > ${API_BUDGET_MS} ms (last 200 probes)`);
    }
  });
  const done = new Promise<void>((r) => worker.once('exit', () => r()));
  return {
    samples,
    async stop() {
      clearInterval(feed);
      worker.postMessage('stop');
      await Promise.race([done, sleep(30_000)]);
      await worker.terminate();
    },
  };
}

/** One create through the API (the replicas in turn); resolves with the preview, or undefined after a limit. */
async function createOne(run: Run, k: number): Promise<Created | undefined> {
  const c = run.c;
  const user = c.users[k % c.users.length]!;
  const r = c.routers[k % c.routers.length]!;
  const marker = `scale-${c.run}-${k}`;
  const res = await fetch(`${r.url}/v1/previews`, {
    method: 'POST',
    headers: run.headers(user),
    body: JSON.stringify({ files: appFiles(marker), serverOnly: true }),
  }).catch((e: Error) => e);
  if (res instanceof Error) {
    run.limit(`create ${k + 1}: ${res.message}`);
    return undefined;
  }
  const body = (await res.json().catch(() => ({}))) as {
    id?: string;
    tier?: string;
    error?: string | { message?: string };
  };
  if (res.status !== 201 || body.tier !== 'docker' || !body.id) {
    run.limit(`create ${k + 1}: HTTP ${res.status} tier ${body.tier} ${JSON.stringify(body.error ?? body)}`);
    return undefined;
  }
  return { k, id: body.id, user, marker };
}

/** Polls the users' lists until every created preview is ready or failed and `done()` says no more come. */
async function watchReady(run: Run, done: () => boolean) {
  for (;;) {
    const pending = run.created.filter((p) => p.readyAt === undefined && !p.failed);
    if ((pending.length === 0 && done()) || run.broken) return;
    const users = new Map(pending.map((p) => [p.user.id, p.user]));
    for (const user of users.values()) {
      const res = await fetch(`${run.c.routers[0]!.url}/v1/previews?limit=100`, {
        headers: run.headers(user),
      }).catch(() => undefined);
      if (res?.status !== 200) continue;
      const list = (await res.json()) as {
        previews: Array<{ id: string; state: string; error: string | null }>;
      };
      const byId = new Map(list.previews.map((p) => [p.id, p]));
      for (const p of pending) {
        const v = byId.get(p.id);
        if (v?.state === 'ready') {
          p.readyAt = performance.now();
          run.ready++;
        } else if (v && ['failed', 'ended'].includes(v.state)) {
          p.failed = v.error ?? v.state;
          run.limit(`preview ${p.k + 1} ${v.state}: ${v.error}`);
        }
      }
    }
    await sleep(250);
  }
}

/** Records the probe's p99 and host memory each time the ready count passes a tenth of `target`. */
function rampRecorder(run: Run, target: number, probe: ReturnType<typeof startProbe>, t0: number) {
  let nextTenth = 1;
  let from = 0;
  const timer = setInterval(() => {
    while (run.ready >= Math.ceil((target * nextTenth) / 10) && nextTenth <= 10) {
      const window = probe.samples.slice(from).map((s) => s.ms);
      from = probe.samples.length;
      const available = availableMiB();
      run.ramp.push({
        live: run.ready,
        at_s: round1((performance.now() - t0) / 1000),
        api_p99_ms: round1(percentile(window, 99)),
        available_mib: Math.round(available),
      });
      if (available < MIN_AVAILABLE_MIB)
        run.limit(`host MemAvailable ${Math.round(available)} MiB < ${MIN_AVAILABLE_MIB}`);
      run.checkProcesses();
      nextTenth++;
    }
  }, 200);
  return () => clearInterval(timer);
}

/** Phase 1: the creates, `concurrency` at a time; stops early after 20 refusals in a row. */
async function createAll(run: Run, f: Flags, probe: ReturnType<typeof startProbe>) {
  const t0 = performance.now();
  const createMs: number[] = [];
  const stopRamp = rampRecorder(run, f.previews, probe, t0);
  let next = 0;
  let refusedInRow = 0;
  let budgetSaid = false;
  let creating = true;
  const watcher = watchReady(run, () => !creating);
  const worker = async () => {
    for (let k = next++; k < f.previews && refusedInRow < 20 && !run.broken; k = next++) {
      if (f.createS > 0 && performance.now() - t0 > f.createS * 1000) {
        if (!budgetSaid) run.limit(`create time budget (--create-s ${f.createS}) spent: creates stopped`);
        budgetSaid = true;
        return;
      }
      if (availableMiB() < MIN_AVAILABLE_MIB) {
        run.limit(`host MemAvailable under ${MIN_AVAILABLE_MIB} MiB: creates stopped`);
        return;
      }
      const t = performance.now();
      const p = await createOne(run, k);
      createMs.push(performance.now() - t);
      if (!p) {
        refusedInRow++;
        continue;
      }
      refusedInRow = 0;
      run.created.push(p);
      if (run.created.length % 50 === 0) say(`scale: ${run.created.length} created, ${run.ready} ready`);
    }
  };
  await Promise.all(Array.from({ length: f.concurrency }, worker));
  creating = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    watcher,
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        run.limit('previews not ready 5 min after the last create');
        resolve();
      }, 300_000);
    }),
  ]);
  clearTimeout(timer);
  stopRamp();
  const lastReady = Math.max(...run.created.map((p) => p.readyAt ?? 0));
  return {
    create_per_s: round1(run.ready / ((lastReady - t0) / 1000)),
    create_s: round1((lastReady - t0) / 1000),
    create_p50_ms: round1(percentile(createMs, 50)),
    create_p99_ms: round1(percentile(createMs, 99)),
  };
}

/** Proportional set size of a process (its share of shared pages counted once), bytes; 0 when gone. */
function pssBytes(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Every process's pid and arguments, from /proc. */
function processes(): Array<{ pid: number; args: string[] }> {
  const out: Array<{ pid: number; args: string[] }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      out.push({ pid: Number(d), args: readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0') });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The routers' and agents' own memory (PSS), bytes. */
function controlPlaneBytes(c: Cluster): number {
  let total = 0;
  for (const p of [...c.routers.map((r) => r.proc), ...c.agents.map((a) => a.proc)])
    if (p.child.pid) total += pssBytes(p.child.pid);
  return total;
}

/**
 * What the run's sandboxes cost the host, bytes: each container's cgroup memory (as `docker stats`),
 * its containerd shim and its docker-proxy processes (PSS; the shim is found by the container id in
 * its arguments, the proxy by the container's address).
 */
async function sandboxBytes(run: Run) {
  const docker = testDocker();
  const boxes = await docker.listContainers({ filters: { label: [`${BENCH_LABEL}=${run.c.run}`] } });
  let cgroups = 0;
  for (const b of boxes) cgroups += (await containerMemoryBytes(docker, b.Id).catch(() => 0)) ?? 0;
  const ids = new Set(boxes.map((b) => b.Id));
  const ips = new Set(
    boxes.map((b) => b.NetworkSettings?.Networks?.[run.c.network]?.IPAddress).filter(Boolean),
  );
  let shims = 0;
  let proxies = 0;
  for (const p of processes()) {
    const at = p.args.indexOf('-id');
    if (p.args[0]?.includes('containerd-shim') && at >= 0 && ids.has(p.args[at + 1] ?? ''))
      shims += pssBytes(p.pid);
    const ip = p.args.indexOf('-container-ip');
    if (p.args[0]?.includes('docker-proxy') && ip >= 0 && ips.has(p.args[ip + 1])) proxies += pssBytes(p.pid);
  }
  return { containers: boxes.length, cgroups, shims, proxies };
}

/**
 * Phase 2, once the warm pools refilled: host memory per live preview = (the sandboxes' cgroups,
 * shims and proxies) per container + the routers' and agents' growth since `baseline` per live
 * preview. The drop of MemAvailable is reported beside it (other work on the host moves it too).
 */
async function measureMemory(run: Run, f: Flags, baseline: { availableMiB: number; controlBytes: number }) {
  if (!run.broken)
    await run.c
      .warmFull(TEMPLATE, f.warm, 300_000)
      .catch(() => run.limit('warm pools did not refill in 5 min'));
  await sleep(5000);
  const available = availableMiB();
  const box = await sandboxBytes(run);
  const n = Math.max(1, box.containers);
  const live = Math.max(1, run.ready);
  const growth = controlPlaneBytes(run.c) - baseline.controlBytes;
  const mib = (b: number) => b / 1024 / 1024;
  return {
    mib_per_preview: round1(mib((box.cgroups + box.shims + box.proxies) / n + growth / live)),
    container_mib_per_preview: round1(mib(box.cgroups / n)),
    shim_mib_per_preview: round1(mib(box.shims / n)),
    proxy_mib_per_preview: round1(mib(box.proxies / n)),
    control_plane_mib_per_preview: round1(mib(growth / live)),
    available_drop_mib_per_preview: round1((baseline.availableMiB - available) / live),
    containers: box.containers,
    host_available_mib: Math.round(available),
  };
}

/** One sync session with its op count per batch, so acks count ops. */
interface Tracked {
  session: SyncSession;
  opsBySeq: Map<number, number>;
  nextSeq: number;
  open: boolean;
  /** Closed for good by the router (the preview ended, or the socket was refused): no more writes. */
  closed: boolean;
}

/** Phase 3: sync fan-out at `opsPerS` for `syncS` seconds; every op counted by its persisted ack. */
async function syncFanOut(run: Run, f: Flags) {
  const live = run.broken ? [] : run.created.filter((p) => p.readyAt !== undefined);
  const tally = { sent: 0, acked: 0, applied: 0, rejected: 0, lastAckAt: 0, done: false };
  const ackMs: number[] = [];
  const appliedMs: number[] = [];
  const tracked: Tracked[] = live.map((p, i) => {
    const client = new PreviewClient({
      baseUrl: run.c.routers[i % run.c.routers.length]!.url,
      token: p.user.jwt,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
    });
    const t: Tracked = {
      session: client.sync(p.id),
      opsBySeq: new Map(),
      nextSeq: 1,
      open: false,
      closed: false,
    };
    let lastError = '';
    t.session.on('error', (e) => {
      lastError = e.error.message;
    });
    t.session.on('state', (e) => {
      if (e.state === 'open') t.open = true;
      if (e.state !== 'closed' || t.closed) return;
      t.closed = true;
      if (!tally.done) run.limit(`sync: preview ${p.k + 1}'s session closed for good: ${lastError}`);
    });
    t.session.on('persisted', (e) => {
      tally.acked += t.opsBySeq.get(e.seq) ?? 0;
      t.opsBySeq.delete(e.seq);
      tally.lastAckAt = performance.now();
      ackMs.push(e.ms);
    });
    t.session.on('applied', (e) => {
      tally.applied += t.opsBySeq.get(e.seq) ?? 0;
      appliedMs.push(e.ms);
    });
    t.session.on('rejected', (e) => {
      tally.rejected++;
      if (tally.rejected === 1) run.limit(`sync batch rejected: ${e.error.message}`);
    });
    return t;
  });
  const openBy = Date.now() + 120_000;
  while (tracked.some((t) => !t.open) && Date.now() < openBy) await sleep(100);
  const opened = tracked.filter((t) => t.open).length;
  if (opened < tracked.length) run.limit(`sync: ${tracked.length - opened} sockets not open after 120 s`);
  say(`scale: ${opened} sync sockets open; fan-out at ${f.opsPerS} ops/s for ${f.syncS} s`);
  const start = performance.now();
  let cursor = 0;
  // Every tick, the ops due by then, spread round-robin: each preview gets at most one batch a tick.
  for (let tick = 1; performance.now() - start < f.syncS * 1000 && tracked.length > 0; tick++) {
    const due = Math.floor((f.opsPerS * (performance.now() - start)) / 1000) - tally.sent;
    const counts = new Map<Tracked, number>();
    for (let j = 0; j < due; j++) {
      const t = tracked[cursor++ % tracked.length]!;
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    for (const [t, count] of counts) {
      if (t.closed) continue;
      for (let j = 0; j < count; j++) t.session.write(`data/o${j}.txt`, `${tick} ${j}\n`);
      t.session.flush();
      for (let left = count; left > 0; left -= LIMITS.batchOps)
        t.opsBySeq.set(t.nextSeq++, Math.min(left, LIMITS.batchOps));
      tally.sent += count;
    }
    await sleep(Math.max(0, start + tick * f.tickMs - performance.now()));
  }
  const sendS = (performance.now() - start) / 1000;
  // Acks may trail the sends: wait while they keep coming (no ack for 60 s: the rest is lost).
  for (let last = tally.acked, quietSince = performance.now(); tally.acked < tally.sent; await sleep(250)) {
    if (tally.acked !== last) {
      last = tally.acked;
      quietSince = performance.now();
    } else if (performance.now() - quietSince > 60_000) break;
  }
  tally.done = true;
  for (const t of tracked) t.session.close();
  const lost = tally.sent - tally.acked;
  if (lost > 0) run.limit(`sync: ${lost} of ${tally.sent} ops not acked persisted`);
  return {
    ops_per_s: round1(tally.acked / ((Math.max(tally.lastAckAt, start + 1) - start) / 1000)),
    sent_ops_per_s: round1(tally.sent / sendS),
    sent_ops: tally.sent,
    acked_ops: tally.acked,
    applied_ops: tally.applied,
    lost_ops: lost,
    rejected_batches: tally.rejected,
    sync_sockets: opened,
    ack_p50_ms: round1(percentile(ackMs, 50)),
    ack_p99_ms: round1(percentile(ackMs, 99)),
    applied_p50_ms: round1(percentile(appliedMs, 50)),
    applied_p99_ms: round1(percentile(appliedMs, 99)),
  };
}

/** Phase 4: every preview's page through the preview proxy of the replica after the one that created it. */
async function checkAnswering(run: Run): Promise<number> {
  const live = run.created.filter((p) => !p.failed);
  let answering = 0;
  let next = 0;
  const worker = async () => {
    for (let p = live[next++]; p; p = live[next++]) {
      const r = run.c.routers[(p.k + 1) % run.c.routers.length]!;
      const why = await pageThroughProxy(run, r, p).catch((e: Error) => e.message);
      if (why === undefined) answering++;
      else run.limit(`preview ${p.k + 1} through the proxy: ${why}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return answering;
}

/** The page of `p` through router `r`'s proxy; undefined when it is 200 with the marker, else why not. */
async function pageThroughProxy(
  run: Run,
  r: Cluster['routers'][number],
  p: Created,
): Promise<string | undefined> {
  const res = await fetch(`${r.url}/v1/previews/${p.id}`, { headers: run.headers(p.user) });
  const view = (await res.json()) as { previewUrl?: string | null; state?: string };
  if (!view.previewUrl) return `GET ${res.status}, state ${view.state}, no previewUrl`;
  const url = new URL(view.previewUrl);
  const host = url.hostname;
  const token = url.searchParams.get('token') ?? '';
  const exchange = await hostGet(r.proc.port, `/?token=${encodeURIComponent(token)}`, { host });
  const cookie = String(exchange.headers['set-cookie']?.[0] ?? '').split(';')[0];
  if (!cookie) return `token exchange answered ${exchange.status} without a cookie`;
  const page = await hostGet(r.proc.port, '/', { host, cookie, 'sec-fetch-dest': 'empty' });
  if (page.status !== 200) return `page answered ${page.status}: ${page.body.slice(0, 120)}`;
  return page.body.includes(p.marker) ? undefined : `page without its marker: ${page.body.slice(0, 120)}`;
}

/** Lines at pino level ≥ 50 (error) the processes printed: how many, and the first. */
function processErrors(c: Cluster) {
  let count = 0;
  let first: string | undefined;
  for (const p of [...c.routers.map((r) => r.proc), ...c.agents.map((a) => a.proc)])
    for (const l of p.lines)
      if (/"level":(5|6)\d/.test(l)) {
        count++;
        first ??= `${p.name}: ${l.slice(0, 300)}`;
      }
  return { process_errors: count, first_process_error: first ?? null };
}

export default async function scale(args: string[]): Promise<object> {
  const f = parseFlags(args);
  const began = performance.now();
  const load0 = loadavg()[0]!;
  const perAgent = Math.ceil(f.previews / Math.max(1, f.agents));
  const c = await startCluster({
    routers: f.routers,
    agents: f.agents,
    slotsPerAgent: perAgent + f.warm,
    warmPool: `${TEMPLATE}=${f.warm}`,
    users: f.users,
    maxLivePerUser: Math.ceil(f.previews / f.users) + 1,
    memoryMiB: f.memoryMiB,
    ...(f.sandboxCpuShares >= 0 ? { sandboxCpuShares: f.sandboxCpuShares } : {}),
    say,
    ...(f.cpuProf ? { execArgv: ['--cpu-prof', `--cpu-prof-dir=${f.cpuProf}`] } : {}),
  });
  const run = new Run(c);
  const watchdog = setInterval(() => run.checkProcesses(), 1000);
  try {
    await c
      .warmFull(TEMPLATE, f.warm, 300_000)
      .catch(() => run.limit('warm pools not full 5 min after start'));
    await sleep(3000);
    const baseline = { availableMiB: availableMiB(), controlBytes: controlPlaneBytes(c) };
    say(`scale: warm pools full; ${Math.round(baseline.availableMiB)} MiB available; creating ${f.previews}`);
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const histogram0 = await routerHistogram(c);
    const probe = startProbe(run);
    const creates = await createAll(run, f, probe);
    lag.disable();
    const histogram1 = await routerHistogram(c);
    say(`scale: ${run.ready} ready at ${creates.create_per_s}/s`);
    const createSamples = probe.samples.map((s) => s.ms);
    run.phase = 'memory';
    const memory = await measureMemory(run, f, baseline);
    run.phase = 'sync';
    const from = probe.samples.length;
    const sync = await syncFanOut(run, f);
    await probe.stop();
    const histogram2 = await routerHistogram(c);
    const syncSamples = probe.samples.slice(from).map((s) => s.ms);
    run.checkProcesses();
    const answering = await checkAnswering(run);
    const live = (
      await c.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM preview_sessions WHERE state = 'ready'`,
      )
    ).rows[0]!.n;
    const all = [...createSamples, ...syncSamples];
    const first = run.limits[0];
    const { create_per_s, ...createRest } = creates;
    const { mib_per_preview, ...memoryRest } = memory;
    const { ops_per_s, lost_ops, ...syncRest } = sync;
    return {
      live_previews: live,
      answering,
      create_per_s,
      api_p50_ms: round1(percentile(all, 50)),
      api_p99_ms: round1(percentile(all, 99)),
      mib_per_preview,
      ops_per_s,
      lost_ops,
      first_limit: first ? `at ${first.live} live: ${first.what}` : 'none',
      requested: f.previews,
      created: run.created.length,
      ...createRest,
      api_create_phase: {
        p50_ms: round1(percentile(createSamples, 50)),
        p99_ms: round1(percentile(createSamples, 99)),
      },
      api_sync_phase: {
        p50_ms: round1(percentile(syncSamples, 50)),
        p99_ms: round1(percentile(syncSamples, 99)),
      },
      router_side_create_phase: routerSide(histogram0, histogram1),
      router_side_sync_phase: routerSide(histogram1, histogram2),
      api_requests: all.length,
      bench_loop_delay_create_phase: {
        p99_ms: round1(lag.percentile(99) / 1e6),
        max_ms: round1(lag.max / 1e6),
      },
      ...memoryRest,
      ...syncRest,
      ramp: run.ramp,
      limits: run.limits.slice(0, 10).map((l) => `at ${l.live}: ${l.what}`),
      ...processErrors(c),
      loadavg_1m: { start: round1(load0), end: round1(loadavg()[0]!) },
      config: {
        ...flagsShown(f),
        slots_per_agent: perAgent + f.warm,
        template: TEMPLATE,
      },
      duration_s: Math.round((performance.now() - began) / 1000),
    };
  } finally {
    clearInterval(watchdog);
    await c.close();
  }
}
