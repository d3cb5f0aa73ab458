/**
 * `npm run bench -- claim [--runs N] [--env-runs N] [--naive-runs N]`: warm claim → HTTP 200 of the
 * user's app through the agent's upstream, against the naive path of the original plans (a new
 * container per session, `npm install`, then the dev server) measured in the same run. Also a warm
 * claim of a full-stack preview: express-pg with its own DATABASE_URL (a db-isolation schema + role
 * in a scratch database of `BENCH_DATABASE_URL`, reached through the agent's database forwarder),
 * timed until a route that queries the database answers 200.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { createDbIsolation } from '@preview/db-isolation';
import { migrate } from '@preview/router';
import pg from 'pg';
import {
  BENCH_LABEL,
  benchExpressPgProject,
  benchProject,
  claimAndLoad,
  IMAGE,
  startBenchAgent,
} from './_agent.ts';
import { percentile, round1 } from './stats.ts';

const BASE_URL = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

export default async function claim(args: string[]): Promise<object> {
  const runs = flag(args, 'runs', 15);
  const envRuns = flag(args, 'env-runs', 10);
  const naiveRuns = flag(args, 'naive-runs', 3);
  const base = new URL(BASE_URL);
  // A scratch database for the per-preview schemas of the env claims, removed at the end.
  const dbName = `preview_bench_${randomBytes(6).toString('hex')}`;
  const root = new pg.Client({ connectionString: BASE_URL });
  await root.connect();
  await root.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(BASE_URL);
  dbUrl.pathname = `/${dbName}`;
  const pool = new pg.Pool({ connectionString: dbUrl.toString(), max: 2 });
  pool.on('error', () => {}); // idle clients ended by the final DROP DATABASE ... WITH (FORCE)
  const iso = createDbIsolation({ admin: pool, previewDatabaseUrl: dbUrl.toString() });
  const b = await startBenchAgent({
    WARM_POOL: 'vite-vanilla=2,express-pg=1',
    NODE_SLOTS: '6',
    PREVIEW_MEMORY_MIB: '512',
    PREVIEW_DATABASE_TARGET: `${base.hostname}:${base.port || 5432}`,
  });
  const warm: number[] = [];
  const envWarm: number[] = [];
  const naive: number[] = [];
  try {
    await migrate(pool);
    await iso.prepare();
    for (let i = 0; i < runs + 1; i++) {
      // A warm container is ready before each claim (the pool refills between claims).
      await b.agent.pools.populate();
      await b.agent.pools.settled();
      const id = `pbench${randomBytes(5).toString('hex')}`;
      const ms = await claimAndLoad(b, id, `warm-${i}-${randomBytes(3).toString('hex')}`);
      if (i > 0) warm.push(ms); // the first claim warms the agent's own code paths
      await b.agent.destroy(id);
    }
    for (let i = 0; i < envRuns + 1; i++) {
      await b.agent.pools.populate();
      await b.agent.pools.settled();
      // db-isolation names schemas after a uuid preview id (the router's session id).
      const id = randomUUID();
      const { databaseUrl } = await iso.create(id);
      const marker = `env-${i}-${randomBytes(3).toString('hex')}`;
      const ms = await claimAndLoad(b, id, marker, {
        template: 'express-pg',
        files: benchExpressPgProject(marker),
        env: { DATABASE_URL: databaseUrl },
        path: '/api/db',
      });
      if (i > 0) envWarm.push(ms);
      await b.agent.destroy(id);
      await iso.drop(id);
    }
    for (let i = 0; i < naiveRuns; i++) naive.push(await naiveOnce(b.docker, `naive-${i}`));
  } finally {
    await b.stop();
    await pool.end();
    await root.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    await root.end();
  }
  const p50 = percentile(warm, 50);
  const naiveP50 = percentile(naive, 50);
  process.stderr.write(
    `warm: ${warm.map(Math.round).join(' ')}\nenv warm: ${envWarm.map(Math.round).join(' ')}\nnaive: ${naive.map(Math.round).join(' ')}\n`,
  );
  return {
    p50_ms: round1(p50),
    p95_ms: round1(percentile(warm, 95)),
    env_warm_p50_ms: round1(percentile(envWarm, 50)),
    env_warm_p95_ms: round1(percentile(envWarm, 95)),
    naive_p50_ms: round1(naiveP50),
    naive_over_warm: round1(naiveP50 / p50),
    runs: warm.length,
    env_runs: envWarm.length,
    naive_runs: naive.length,
    image: IMAGE,
  };
}

/**
 * The naive path: a fresh container, the project written into it, `npm install` (npm cache of the
 * image, else the registry), then Vite's CLI; timed until the user's page answers 200.
 */
async function naiveOnce(docker: import('dockerode'), marker: string): Promise<number> {
  const files = benchProject(marker);
  const t0 = performance.now();
  const script = [
    'set -e',
    'mkdir -p /tmp/p/src && cd /tmp/p',
    ...Object.entries(files).map(
      ([path, content]) =>
        `printf '%s' '${Buffer.from(content).toString('base64')}' | node -e "process.stdout.write(Buffer.from(require('fs').readFileSync(0,'utf8'),'base64'))" > ${path}`,
    ),
    'npm install --no-audit --no-fund --prefer-offline >/dev/null 2>&1',
    'exec node node_modules/vite/bin/vite.js --host 0.0.0.0 --port 3000 --strictPort',
  ].join('\n');
  const c = await docker.createContainer({
    Image: IMAGE,
    Entrypoint: ['sh', '-c'],
    Cmd: [script],
    User: '1000:1000',
    Env: [
      'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt',
      'HOME=/tmp',
      'npm_config_cache=/tmp/npm-cache',
    ],
    Labels: { [BENCH_LABEL]: '1' },
    ExposedPorts: { '3000/tcp': {} },
    HostConfig: {
      Init: true,
      PortBindings: { '3000/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] },
      Memory: 1024 * 1024 * 1024,
    },
  });
  try {
    await c.start();
    const port = (await c.inspect()).NetworkSettings.Ports['3000/tcp']?.[0]?.HostPort;
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`);
        const text = await res.text();
        if (res.status === 200 && text.includes(marker)) return performance.now() - t0;
      } catch {
        /* not up yet */
      }
      const state = (await c.inspect()).State;
      if (!state.Running) {
        const logs = await c.logs({ stdout: true, stderr: true, tail: 30 });
        const out = new PassThrough();
        throw new Error(`naive container exited (${state.ExitCode}): ${String(logs)}${out.read() ?? ''}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    await c.remove({ force: true, v: true }).catch(() => {});
  }
}
