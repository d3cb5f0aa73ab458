/**
 * docker/compose.yml on this machine's engine, with every image built offline: Postgres, Redis, two
 * router replicas behind the Caddy load balancer, three pool agents. Previews are created, served
 * and edited through the load balancer only; `docker/cluster.sh down` leaves no container, network
 * or volume behind.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { signUserJwt } from '@preview/router';
import { TEST_PREVIEW_IMAGE } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..');
const sh = (script: string, args: string[], env: Record<string, string> = {}, timeoutMs = 900_000) =>
  run('bash', [join(repo, script), ...args], {
    cwd: repo,
    env: { ...process.env, ...env },
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });

/**
 * A free port below Linux's ephemeral range (32768+), where the engine also takes the random host
 * ports it publishes sandboxes on: a port picked there could be taken before the service binds it.
 */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request to the load balancer, with the Host a browser would send. */
function viaLb(
  port: number,
  o: { path: string; method?: string; host?: string; headers?: Record<string, string>; body?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: o.path,
        method: o.method ?? 'GET',
        headers: { host: o.host ?? `127.0.0.1:${port}`, ...o.headers },
        // A create waits for the sandbox's dev server; on a loaded machine that takes a while.
        timeout: 180_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${o.method ?? 'GET'} ${o.path}`)));
    req.on('error', reject);
    req.end(o.body);
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

// The template's own package.json: this test is about the cluster, not installs (the daemon's and
// the agent's tests cover those), so the project keeps the template's dependencies.
const TEMPLATE_PACKAGE = readFileSync(
  join(import.meta.dirname, '../templates/vite-vanilla/package.json'),
  'utf8',
);
const appFiles = (marker: string) => ({
  'package.json': TEMPLATE_PACKAGE,
  'index.html': `<!doctype html><html><body><h1 id="m">${marker}</h1><script type="module" src="/main.js"></script></body></html>`,
  'main.js': 'document.body.dataset.booted = "1";\n',
});

describe('docker/compose.yml: a cluster of real images on this engine', () => {
  const name = `pvc${randomBytes(4).toString('hex')}`;
  const nodes = [1, 2, 3].map((i) => `${name}-node-${i}`);
  let dir: string;
  let envFile: string;
  let lbPort: number;
  let jwtSecret: string;
  let up = false;

  beforeAll(async () => {
    const tag = TEST_PREVIEW_IMAGE.split(':').pop() ?? 'dev';
    const [images, services] = await Promise.all([
      sh('docker/build-images.sh', ['--offline'], { VERSION: tag }),
      sh('docker/offline-services/build.sh', [tag]),
    ]);
    const [router, agent, sandbox] = images.stdout.trim().split('\n');
    expect(sandbox).toBe(`preview-base:${tag}`);
    const ports: number[] = [];
    while (ports.length < 8) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    lbPort = ports[0]!;
    jwtSecret = randomBytes(32).toString('hex');
    const gid = (await run('stat', ['-c', '%g', '/var/run/docker.sock'])).stdout.trim();
    dir = await mkdtemp(join(tmpdir(), 'compose-cluster-'));
    envFile = join(dir, 'cluster.env');
    await writeFile(
      envFile,
      [
        `CLUSTER_NAME=${name}`,
        `ROUTER_IMAGE=${router}`,
        `AGENT_IMAGE=${agent}`,
        `PREVIEW_IMAGE=${sandbox}`,
        services.stdout.trim(),
        `DOCKER_GID=${gid}`,
        `POSTGRES_PASSWORD=${randomBytes(16).toString('hex')}`,
        `SUPABASE_JWT_SECRET=${jwtSecret}`,
        `PREVIEW_TOKEN_SECRET=${randomBytes(32).toString('hex')}`,
        `NODE_JOIN_TOKEN=${randomBytes(32).toString('hex')}`,
        `LB_PORT=${ports[0]}`,
        `ROUTER_1_PORT=${ports[1]}`,
        `ROUTER_2_PORT=${ports[2]}`,
        `AGENT_1_PORT=${ports[3]}`,
        `AGENT_2_PORT=${ports[4]}`,
        `AGENT_3_PORT=${ports[5]}`,
        `PG_PORT=${ports[6]}`,
        `REDIS_PORT=${ports[7]}`,
        'NODE_SLOTS=4',
        'WARM_POOL=vite-vanilla=1',
        'LOG_LEVEL=warn',
        '',
      ].join('\n'),
    );
    up = true; // from here on, afterAll tears down whatever `up` managed to start
    await sh('docker/cluster.sh', ['up', envFile]).catch(async (e) => {
      const logs = await run('docker', ['ps', '-a', '--filter', `label=com.docker.compose.project=${name}`]);
      throw new Error(`cluster did not come up: ${(e as { stderr?: string }).stderr ?? e}\n${logs.stdout}`);
    });
  }, 1_800_000);

  afterAll(async () => {
    if (up) await sh('docker/cluster.sh', ['down', envFile], {}, 300_000);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 600_000);

  it('creates previews through the load balancer, serves them through it, edits them, and leaves nothing behind', async () => {
    onTestFailed(async () => {
      for (const c of ['router-1', 'router-2', 'agent-1', 'agent-2', 'agent-3']) {
        const logs = await run('docker', ['logs', '--tail', '30', `${name}_${c}_1`]).catch((e) => e);
        console.error(`--- ${c}\n${logs.stdout ?? ''}${logs.stderr ?? ''}`);
      }
    });
    const jwt = await signUserJwt({ secret: jwtSecret, userId: randomUUID() });
    const api = (path: string, method = 'GET', body?: unknown) =>
      viaLb(lbPort, {
        path,
        method,
        headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    const created: Array<{ id: string; tier: string; previewUrl: string; placement?: { nodeId?: string } }> =
      [];
    for (const marker of ['alpha', 'beta', 'gamma']) {
      const res = await api('/v1/previews', 'POST', {
        files: appFiles(marker),
        template: 'vite-vanilla',
        serverOnly: true,
      });
      expect(res.status, res.body).toBeLessThan(300);
      const p = JSON.parse(res.body) as (typeof created)[number];
      expect(p.tier, res.body).toBe('docker');
      created.push(p);
    }

    for (const [i, p] of created.entries()) {
      const marker = ['alpha', 'beta', 'gamma'][i]!;
      // The preview origin is the LB's: the link carries its port, not a replica's.
      const url = new URL(p.previewUrl);
      expect(url.port).toBe(String(lbPort));
      const host = url.host;
      const exchange = await viaLb(lbPort, { path: `${url.pathname}${url.search}`, host });
      expect(exchange.status, exchange.body).toBe(302);
      const cookie = String(exchange.headers['set-cookie']).split(';')[0]!;
      const page = () => viaLb(lbPort, { path: '/', host, headers: { cookie } });
      await until(`${p.id} serving its app`, async () => {
        const r = await page();
        if (r.status === 200 && r.body.includes(`<h1 id="m">${marker}</h1>`)) return r;
        throw new Error(`last answer ${r.status}: ${r.body.slice(0, 400)}`);
      });
      const edit = await api(`/v1/previews/${p.id}/files`, 'PUT', {
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'index.html', content: appFiles(`${marker}-edited`)['index.html'] }],
      });
      expect(edit.status, edit.body).toBe(200);
      await until(`${p.id} serving the edit`, async () => {
        const r = await page();
        return r.body.includes(`<h1 id="m">${marker}-edited</h1>`) ? r : undefined;
      });
    }

    // Each preview runs on one of the cluster's agents, in a container labelled with its node.
    const { stdout } = await run('docker', [
      'ps',
      '--format',
      '{{.Label "preview.node"}} {{.Label "preview.session"}} {{.Names}}',
      '--filter',
      'label=preview.node',
    ]);
    for (const p of created)
      expect(
        stdout.split('\n').some((l) => nodes.some((n) => l.startsWith(`${n} `)) && l.includes(p.id)),
        `${p.id} in ${stdout}`,
      ).toBe(true);

    for (const p of created) expect((await api(`/v1/previews/${p.id}`, 'DELETE')).status).toBe(204);

    await sh('docker/cluster.sh', ['down', envFile], {}, 300_000);
    up = false;
    const left = await Promise.all([
      run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${name}`]),
      ...nodes.map((n) => run('docker', ['ps', '-aq', '--filter', `label=preview.node=${n}`])),
      run('docker', ['network', 'ls', '-q', '--filter', `name=${name}`]),
      run('docker', ['volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${name}`]),
    ]);
    expect(left.map((r) => r.stdout.trim())).toEqual(left.map(() => ''));
  }, 900_000);
});
