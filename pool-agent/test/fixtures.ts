import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import type Docker from 'dockerode';
import { type Agent, type AgentOptions, createAgent } from '../src/agent.ts';
import { type AgentConfig, loadConfig } from '../src/config.ts';
import { createDockerRuntime, type DockerRuntime } from '../src/runtime/docker.ts';

/**
 * The image the agent tests run: PREVIEW_IMAGE when set (scripts/test-env.sh builds it), which must
 * hold the real preview-daemon with installed templates.
 */
export const IMAGE = process.env['AGENT_TEST_IMAGE'] ?? TEST_PREVIEW_IMAGE;
export const NETWORK = 'preview-net-test';

export function testConfig(overrides: Record<string, string> = {}): AgentConfig {
  return loadConfig({
    AGENT_TOKEN: `tok_${randomBytes(16).toString('hex')}`,
    AGENT_PORT: '0',
    NODE_NAME: `t-${randomBytes(4).toString('hex')}`,
    PREVIEW_IMAGE: IMAGE,
    PREVIEW_NETWORK: NETWORK,
    PREVIEW_MEMORY_MIB: '256',
    PREVIEW_PIDS_LIMIT: '128',
    NODE_SLOTS: '8',
    WARM_POOL: 'vite-vanilla=1',
    READY_TIMEOUT_MS: '60000',
    LOG_LEVEL: 'silent',
    ...overrides,
  });
}

export async function dockerRuntimeFor(config: AgentConfig): Promise<DockerRuntime> {
  return createDockerRuntime({
    docker: testDocker(),
    node: config.NODE_NAME,
    image: config.PREVIEW_IMAGE,
    network: config.PREVIEW_NETWORK,
    uid: config.PREVIEW_UID,
    memoryMiB: config.PREVIEW_MEMORY_MIB,
    cpus: config.PREVIEW_CPUS,
    pidsLimit: config.PREVIEW_PIDS_LIMIT,
    tmpfsMiB: config.PREVIEW_TMPFS_MIB,
    labels: { [TEST_LABEL]: '1' },
  });
}

/** An agent on the real engine; `stop()` removes every container it made. */
export async function startAgent(
  config: AgentConfig,
  extra: Partial<AgentOptions> = {},
): Promise<{ agent: Agent; runtime: DockerRuntime; stop: () => Promise<void> }> {
  const runtime = await dockerRuntimeFor(config);
  const agent = await createAgent({ config, runtime, ...extra });
  return {
    agent,
    runtime,
    stop: async () => {
      await agent.close({ removeSandboxes: true });
      for (const box of await runtime.list()) await runtime.remove(box.id);
      await runtime.close();
    },
  };
}

/** Runs `cmd` inside a container; returns exit code and combined output. */
export async function exec(
  docker: Docker,
  id: string,
  cmd: string[],
): Promise<{ code: number; out: string }> {
  const e = await docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await e.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  const out = new PassThrough();
  out.on('data', (c: Buffer) => chunks.push(c));
  docker.modem.demuxStream(stream, out, out);
  await new Promise<void>((resolve) => stream.on('end', () => resolve()));
  const info = await e.inspect();
  return { code: info.ExitCode ?? -1, out: Buffer.concat(chunks).toString('utf8') };
}

export function authed(token: string, init: RequestInit = {}): RequestInit {
  return {
    ...init,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers },
  };
}

export async function until<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const templatesDir = join(import.meta.dirname, '../../templates');

/** A user's project derived from the vite-vanilla template: the same package files, its own sources. */
export function userProject(marker: string): Record<string, string> {
  const tpl = (f: string) => readFileSync(join(templatesDir, 'vite-vanilla', f), 'utf8');
  return {
    'package.json': tpl('package.json'),
    'package-lock.json': tpl('package-lock.json'),
    'index.html': `<!doctype html><html><head><title>${marker}</title></head><body><div id="app"></div><p id="marker">${marker}</p><script type="module" src="/src/main.js"></script></body></html>`,
    'src/main.js':
      "import './style.css';\nimport { message } from './message.js';\ndocument.querySelector('#app').textContent = message;\n",
    'src/style.css': `#marker { color: rgb(1, 2, 3); }\n`,
    'src/message.js': `export const message = 'hello ${marker}';\n`,
  };
}

/**
 * A user's project derived from the express-pg template: the same package files, and its server with
 * one more route, `/api/db`, answering which database and role the app is connected to.
 */
export function expressPgProject(marker: string): Record<string, string> {
  const tpl = (f: string) => readFileSync(join(templatesDir, 'express-pg', f), 'utf8');
  const server = tpl('server.js');
  const route = `app.get('/api/db', async (_req, res) => {
  if (!pool) return res.status(500).json({ error: 'no DATABASE_URL' });
  const { rows } = await pool.query('SELECT current_database() AS db, current_user AS role');
  res.json({ marker: ${JSON.stringify(marker)}, ...rows[0] });
});

`;
  const at = server.indexOf('const port =');
  if (at < 0) throw new Error('templates/express-pg/server.js changed: no "const port =" to insert before');
  return {
    'package.json': tpl('package.json'),
    'package-lock.json': tpl('package-lock.json'),
    'server.js': server.slice(0, at) + route + server.slice(at),
  };
}
