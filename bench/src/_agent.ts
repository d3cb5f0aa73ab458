/** Shared setup of the docker benches: a real pool agent on the local engine, cleaned up after. */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Agent,
  createAgent,
  createDockerRuntime,
  type DockerRuntime,
  loadConfig,
} from '@preview/pool-agent';
import Docker from 'dockerode';

export const BENCH_LABEL = 'preview.bench';
export const IMAGE = process.env['PREVIEW_IMAGE'] ?? 'preview-base:dev';
const templates = join(import.meta.dirname, '../../templates');

export interface BenchAgent {
  agent: Agent;
  runtime: DockerRuntime;
  docker: Docker;
  token: string;
  stop(): Promise<void>;
}

export async function startBenchAgent(env: Record<string, string>): Promise<BenchAgent> {
  const token = `bench_${randomBytes(16).toString('hex')}`;
  const config = loadConfig({
    AGENT_TOKEN: token,
    AGENT_PORT: '0',
    NODE_NAME: `bench-${randomBytes(4).toString('hex')}`,
    PREVIEW_IMAGE: IMAGE,
    PREVIEW_NETWORK: 'preview-net-bench',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const docker = new Docker({ socketPath: config.DOCKER_SOCKET });
  const runtime = await createDockerRuntime({
    docker,
    node: config.NODE_NAME,
    image: config.PREVIEW_IMAGE,
    network: config.PREVIEW_NETWORK,
    uid: config.PREVIEW_UID,
    memoryMiB: config.PREVIEW_MEMORY_MIB,
    cpus: config.PREVIEW_CPUS,
    pidsLimit: config.PREVIEW_PIDS_LIMIT,
    tmpfsMiB: config.PREVIEW_TMPFS_MIB,
    labels: { [BENCH_LABEL]: '1' },
  });
  const agent = await createAgent({ config, runtime });
  return {
    agent,
    runtime,
    docker,
    token,
    async stop() {
      await agent.close({ removeSandboxes: true });
      for (const box of await runtime.list()) await runtime.remove(box.id);
      await runtime.close();
    },
  };
}

/** A user's project made from the vite-vanilla template with its own index.html. */
export function benchProject(marker: string): Record<string, string> {
  const tpl = (f: string) => readFileSync(join(templates, 'vite-vanilla', f), 'utf8');
  return {
    'package.json': tpl('package.json'),
    'package-lock.json': tpl('package-lock.json'),
    'index.html': `<!doctype html><html><body><p>${marker}</p><script type="module" src="/src/main.js"></script></body></html>`,
    'src/main.js': "import { message } from './message.js';\ndocument.body.append(message);\n",
    'src/message.js': `export const message = '${marker}';\n`,
  };
}

/**
 * A user's project made from the express-pg template whose `/api/db` route queries its database
 * (`DATABASE_URL`) and answers with `marker`.
 */
export function benchExpressPgProject(marker: string): Record<string, string> {
  const tpl = (f: string) => readFileSync(join(templates, 'express-pg', f), 'utf8');
  const server = tpl('server.js');
  const at = server.indexOf('const port =');
  if (at < 0) throw new Error('templates/express-pg/server.js changed: no "const port =" to insert before');
  const route = `app.get('/api/db', async (_req, res) => {
  const { rows } = await pool.query('SELECT current_user AS role');
  res.json({ marker: ${JSON.stringify(marker)}, role: rows[0].role });
});

`;
  return {
    'package.json': tpl('package.json'),
    'package-lock.json': tpl('package-lock.json'),
    'server.js': server.slice(0, at) + route + server.slice(at),
  };
}

/**
 * POST a claim, then GET the app through the agent's upstream until it answers 200 with `marker`.
 * Defaults: the vite-vanilla bench project at `/`; `claim` overrides the body (template, files, env).
 */
export async function claimAndLoad(
  b: BenchAgent,
  previewId: string,
  marker: string,
  claim: { template: string; files: Record<string, string>; env?: Record<string, string>; path: string } = {
    template: 'vite-vanilla',
    files: benchProject(marker),
    path: '/',
  },
): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${b.agent.url}/v1/previews`, {
    method: 'POST',
    headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      previewId,
      template: claim.template,
      files: claim.files,
      ...(claim.env ? { env: claim.env } : {}),
    }),
  });
  const body = (await res.json()) as { upstream?: string; warm?: boolean };
  if (res.status !== 201 || !body.upstream)
    throw new Error(`claim answered ${res.status}: ${JSON.stringify(body)}`);
  if (claim.env && !body.warm) throw new Error('the env claim was not warm: the express-pg pool was empty');
  for (;;) {
    const page = await fetch(`${body.upstream}${claim.path}`, { headers: { 'x-agent-token': b.token } });
    const text = await page.text();
    if (page.status === 200 && text.includes(marker)) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
