import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { DAEMON_PORT } from '@preview/tiers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { authed, exec, startAgent, testConfig, until, userProject } from '../test/fixtures.ts';
import type { Agent } from './agent.ts';
import type { AgentConfig } from './config.ts';
import type { DockerRuntime } from './runtime/docker.ts';

const pid = () => `p${randomBytes(6).toString('hex')}`;

describe('pool agent on the real Docker engine', () => {
  let config: AgentConfig;
  let agent: Agent;
  let runtime: DockerRuntime;
  let stop: () => Promise<void>;
  let token: string;

  beforeAll(async () => {
    config = testConfig();
    token = config.AGENT_TOKEN!;
    ({ agent, runtime, stop } = await startAgent(config));
    await agent.pools.populate();
    await agent.pools.settled();
  });
  afterAll(async () => {
    await stop?.();
  });

  const claim = async (previewId: string, files: Record<string, string>, extra: object = {}) => {
    const res = await fetch(
      `${agent.url}/v1/previews`,
      authed(token, {
        method: 'POST',
        body: JSON.stringify({ previewId, template: 'vite-vanilla', files, ...extra }),
      }),
    );
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status !== 201) throw new Error(`claim answered ${res.status}: ${JSON.stringify(body)}`);
    return body as { previewId: string; containerId: string; upstream: string; warm: boolean };
  };
  const get = (path: string) => fetch(`${agent.url}${path}`, authed(token));

  describe('API authentication and validation', () => {
    it('refuses a request without a token or with a wrong one (401)', async () => {
      const variants: Array<Record<string, string>> = [
        {},
        { authorization: 'Bearer wrong-token-wrong-token' },
        { authorization: token },
      ];
      for (const headers of variants) {
        const res = await fetch(`${agent.url}/v1/capacity`, { headers });
        expect(res.status).toBe(401);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
      }
      const up = await fetch(`${agent.url}/v1/previews/pnone/http/`);
      expect(up.status).toBe(401);
    });

    it('refuses a sync socket without a token', async () => {
      const ws = new WebSocket(`${agent.url.replace('http', 'ws')}/v1/previews/pnone/sync`);
      const status = await new Promise<number>((resolve) => {
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => resolve(101));
      });
      expect(status).toBe(401);
    });

    it('answers a bad body with 400 naming the field and rule', async () => {
      const cases: Array<[unknown, RegExp]> = [
        [{ previewId: pid(), template: 'cobol', files: {} }, /template/],
        [{ previewId: 'bad id!', template: 'vite-vanilla', files: {} }, /previewId/],
        [
          { previewId: pid(), template: 'vite-vanilla', files: { '../escape.js': 'x' } },
          /files\.\.\.\/escape\.js.*traversal/,
        ],
        [
          { previewId: pid(), template: 'vite-vanilla', files: {}, env: { PREVIEW_DAEMON_TOKEN: 'x' } },
          /env.*reserved/,
        ],
        [{ previewId: pid(), template: 'vite-vanilla' }, /files/],
      ];
      for (const [body, field] of cases) {
        const res = await fetch(
          `${agent.url}/v1/previews`,
          authed(token, { method: 'POST', body: JSON.stringify(body) }),
        );
        expect(res.status).toBe(400);
        const err = ((await res.json()) as { error: { code: string; message: string } }).error;
        expect(err.code).toBe('invalid_body');
        expect(err.message).toMatch(field);
      }
      const notJson = await fetch(`${agent.url}/v1/previews`, authed(token, { method: 'POST', body: '{' }));
      expect(notJson.status).toBe(400);
    });
  });

  it('a warm claim serves the user own index.html through the agent upstream', async () => {
    const previewId = pid();
    const marker = `marker-${randomBytes(4).toString('hex')}`;
    const r = await claim(previewId, userProject(marker));
    expect(r.warm).toBe(true);
    expect(r.upstream).toBe(`${agent.url}/v1/previews/${previewId}/http`);
    const page = await fetch(`${r.upstream}/`, { headers: { 'x-agent-token': token } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(marker);
    const css = await fetch(`${r.upstream}/src/style.css`, { headers: { 'x-agent-token': token } });
    expect(await css.text()).toContain('rgb(1, 2, 3)');
    // Capacity counts the claim; the pool refills in the background.
    expect(agent.capacity().used).toBeGreaterThanOrEqual(1);
    await until(async () => (agent.pools.counts()['vite-vanilla'] ?? 0) >= 1, 60_000, 'pool refill');
    const metrics = await (await get('/metrics')).text();
    expect(metrics).toMatch(/preview_agent_claims_total\{path="warm",outcome="ok"\} [1-9]/);
    expect(metrics).toMatch(/preview_agent_warm\{template="vite-vanilla"\} [1-9]/);
    expect(await agent.destroy(previewId)).toBe(true);
  });

  it('an edit over the sync relay is acked, reaches Vite and the HMR update is observed', async () => {
    const previewId = pid();
    const r = await claim(previewId, userProject('hmr'));
    const wsBase = agent.url.replace('http', 'ws');
    // Vite's HMR socket through the agent's upstream (WebSocket upgrade proxy).
    const hmr = new WebSocket(`${wsBase}/v1/previews/${previewId}/http/`, 'vite-hmr', {
      headers: { 'x-agent-token': token },
    });
    const hmrMessages: string[] = [];
    hmr.on('message', (d) => hmrMessages.push(String(d)));
    await new Promise((resolve, reject) => {
      hmr.once('open', resolve);
      hmr.once('error', reject);
    });
    // Load the page's modules so they are in Vite's module graph.
    for (const path of ['/', '/src/main.js', '/src/message.js', '/src/style.css']) {
      const res = await fetch(`${r.upstream}${path}`, { headers: { 'x-agent-token': token } });
      expect(res.status).toBe(200);
      await res.text();
    }
    const sync = new WebSocket(`${wsBase}/v1/previews/${previewId}/sync`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const frames: Array<{ type: string; seq?: number; kind?: string }> = [];
    sync.on('message', (d) => frames.push(JSON.parse(String(d))));
    await new Promise((resolve, reject) => {
      sync.once('open', resolve);
      sync.once('error', reject);
    });
    sync.send(JSON.stringify({ type: 'hello', lastAckedSeq: 0 }));
    sync.send(
      JSON.stringify({
        type: 'batch',
        seq: 1,
        ops: [{ op: 'put', path: 'src/style.css', content: '#marker { color: rgb(9, 8, 7); }\n' }],
      }),
    );
    await until(async () => frames.some((f) => f.type === 'ack' && f.seq === 1), 20_000, 'ack 1');
    await until(
      async () => frames.some((f) => f.type === 'hmr' && f.seq === 1 && f.kind === 'update'),
      20_000,
      'hmr frame for seq 1',
    );
    // The browser side of HMR: Vite's own socket (through the agent's upgrade proxy) got the update.
    await until(
      async () => hmrMessages.some((m) => m.includes('"update"') && m.includes('style.css')),
      20_000,
      'vite update',
    );
    const src = await fetch(`${r.upstream}/src/style.css`, { headers: { 'x-agent-token': token } });
    expect(await src.text()).toContain('rgb(9, 8, 7)');
    // A bad path is rejected with the rule, and nothing is written.
    const bad = await fetch(
      `${agent.url}/v1/previews/${previewId}/apply`,
      authed(token, {
        method: 'POST',
        body: JSON.stringify({
          type: 'batch',
          seq: 2,
          ops: [{ op: 'put', path: 'a/../../x', content: 'x' }],
        }),
      }),
    );
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(
      /path: must not contain "\.\."/,
    );
    const ok = await fetch(
      `${agent.url}/v1/previews/${previewId}/apply`,
      authed(token, {
        method: 'POST',
        body: JSON.stringify({
          type: 'batch',
          seq: 2,
          ops: [{ op: 'put', path: 'notes.txt', content: 'n' }],
        }),
      }),
    );
    expect(await ok.json()).toEqual({ type: 'ack', seq: 2, stage: 'applied' });
    sync.close();
    hmr.close();
    expect(await agent.destroy(previewId)).toBe(true);
  });

  it('hardening: read-only root, no capabilities, non-root uid, limits set', async () => {
    const previewId = pid();
    const r = await claim(previewId, userProject('hard'));
    const docker = runtime.docker;
    const write = await exec(docker, r.containerId, ['sh', '-c', 'echo x > /evil']);
    expect(write.code).not.toBe(0);
    expect(write.out).toMatch(/Read-only file system/);
    const uid = await exec(docker, r.containerId, ['id', '-u']);
    expect(uid.out.trim()).toBe('1000');
    // Every process of the container, the daemon included.
    const caps = await exec(docker, r.containerId, ['sh', '-c', 'grep -h CapEff /proc/[0-9]*/status']);
    expect(caps.out.trim().split('\n').length).toBeGreaterThanOrEqual(2);
    for (const line of caps.out.trim().split('\n')) expect(line).toMatch(/^CapEff:\s+0000000000000000$/);
    const nnp = await exec(docker, r.containerId, [
      'sh',
      '-c',
      'grep -h -E "NoNewPrivs|Seccomp:" /proc/1/status',
    ]);
    expect(nnp.out).toMatch(/NoNewPrivs:\s+1/);
    expect(nnp.out).toMatch(/Seccomp:\s+2/);
    const info = await docker.getContainer(r.containerId).inspect();
    expect(info.HostConfig.Memory).toBe(256 * 1024 * 1024);
    expect(info.HostConfig.MemorySwap).toBe(info.HostConfig.Memory);
    expect(info.HostConfig.PidsLimit).toBe(128);
    expect(info.HostConfig.NanoCpus).toBeGreaterThan(0);
    expect(info.HostConfig.Init).toBe(true);
    // Under Docker's init the image's tini is not PID 1: it registers as a subreaper (tini -s), so it
    // reaps what the app's processes orphan, and every sandbox's log no longer starts with its warning.
    const logs = String(await docker.getContainer(r.containerId).logs({ stdout: true, stderr: true }));
    expect(logs).not.toContain('Tini is not running as PID 1');
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    expect(info.HostConfig.LogConfig?.Config?.['max-size']).toBeTruthy();
    for (const b of Object.values(info.HostConfig.PortBindings ?? {}) as Array<Array<{ HostIp: string }>>)
      for (const x of b) expect(x.HostIp).toBe('127.0.0.1');
    expect(info.Config.Labels['preview.node']).toBe(config.NODE_NAME);
    expect(await agent.destroy(previewId)).toBe(true);
  });

  it('a fork bomb hits the pids limit; the host and another preview stay fine', async () => {
    const a = pid();
    const b = pid();
    const ra = await claim(a, userProject('bomb'));
    const rb = await claim(b, userProject('bystander'));
    const docker = runtime.docker;
    // Runs in the background inside A; exec returns at once.
    // Every copy sleeps after forking, so the processes pile up to the limit and stay there.
    await exec(docker, ra.containerId, [
      'sh',
      '-c',
      'f() { f | f & sleep 60; }; f >/dev/null 2>&1 & echo started',
    ]);
    const cg = `/sys/fs/cgroup/pids/docker/${ra.containerId}`;
    const refused = () => {
      try {
        return Number(/max (\d+)/.exec(readFileSync(`${cg}/pids.events`, 'utf8'))?.[1] ?? 0);
      } catch {
        return 0;
      }
    };
    const peak = await until(
      async () => {
        const n = Number(readFileSync(`${cg}/pids.current`, 'utf8'));
        return n >= 120 || refused() > 0 ? n : undefined;
      },
      60_000,
      'the fork bomb to fill the pids limit',
    );
    expect(peak).toBeLessThanOrEqual(128);
    const page = await fetch(`${rb.upstream}/`, { headers: { 'x-agent-token': token } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('bystander');
    expect(execFileSync('sh', ['-c', 'echo host-ok']).toString().trim()).toBe('host-ok');
    expect(await agent.destroy(a)).toBe(true);
    expect(await agent.destroy(b)).toBe(true);
  });

  it('a memory bomb is OOM-killed and the agent reports the preview failed with the reason', async () => {
    const previewId = pid();
    const r = await claim(previewId, userProject('oom'));
    await exec(runtime.docker, r.containerId, [
      'node',
      '-e',
      'const a = []; for (;;) a.push(Buffer.alloc(8 << 20, 1));',
    ]);
    const status = await until(
      async () => {
        const res = await get(`/v1/previews/${previewId}/status`);
        const s = (await res.json()) as { phase: string; failed?: boolean; message?: string };
        return s.failed ? s : undefined;
      },
      30_000,
      'failed status',
    );
    expect(status.phase).toBe('error');
    expect(status.message).toMatch(/out of memory/);
    expect(await agent.destroy(previewId)).toBe(true);
  });

  it('a preview whose container dies is reported failed with the exit reason; a dead warm one is replaced', async () => {
    const previewId = pid();
    const r = await claim(previewId, userProject('crash'));
    await runtime.docker.getContainer(r.containerId).kill({ signal: 'SIGKILL' });
    const status = await until(
      async () => {
        const s = (await (await get(`/v1/previews/${previewId}/status`)).json()) as {
          failed?: boolean;
          message?: string;
        };
        return s.failed ? s : undefined;
      },
      30_000,
      'failed status after the kill',
    );
    expect(status.message).toMatch(/exited with code 137/);
    const apply = await fetch(
      `${agent.url}/v1/previews/${previewId}/apply`,
      authed(token, {
        method: 'POST',
        body: JSON.stringify({ type: 'batch', seq: 1, ops: [{ op: 'delete', path: 'x' }] }),
      }),
    );
    expect(apply.status).toBe(409);
    expect(await agent.destroy(previewId)).toBe(true);

    await agent.pools.settled();
    const warm = (await runtime.list()).find((b) => !b.previewId && b.state === 'running');
    expect(warm).toBeDefined();
    await runtime.docker.getContainer(warm!.id).kill({ signal: 'SIGKILL' });
    await until(
      async () => {
        const boxes = await runtime.list();
        return !boxes.some((b) => b.id === warm!.id) && (agent.pools.counts()['vite-vanilla'] ?? 0) >= 1;
      },
      60_000,
      'the dead warm container removed and replaced',
    );
  });

  it('a preview cannot open a connection to another preview', async () => {
    const a = pid();
    const b = pid();
    const ra = await claim(a, userProject('net-a'));
    const rb = await claim(b, userProject('net-b'));
    const docker = runtime.docker;
    const bInfo = await docker.getContainer(rb.containerId).inspect();
    const bIp = Object.values(bInfo.NetworkSettings.Networks)[0]?.IPAddress;
    const bPort = new URL((await runtime.inspect(rb.containerId))!.upstream).port;
    const gateway = runtime.gateway!;
    expect(bIp).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    // Control: the host reaches B on the bridge.
    await new Promise<void>((resolve, reject) => {
      const s = connect(DAEMON_PORT, bIp!, () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
    const probe = (host: string, port: number | string) =>
      `const s=require('net').connect(${port},'${host}');s.setTimeout(3000);s.on('connect',()=>{console.log('CONNECTED');process.exit(0)});s.on('timeout',()=>{console.log('TIMEOUT');process.exit(1)});s.on('error',e=>{console.log('ERR',e.code);process.exit(1)});`;
    const own = await exec(docker, ra.containerId, ['node', '-e', probe('127.0.0.1', DAEMON_PORT)]);
    expect(own.out).toContain('CONNECTED');
    const toB = await exec(docker, ra.containerId, ['node', '-e', probe(bIp!, DAEMON_PORT)]);
    expect(toB.out).not.toContain('CONNECTED');
    const toBPublished = await exec(docker, ra.containerId, ['node', '-e', probe(gateway, bPort)]);
    expect(toBPublished.out).not.toContain('CONNECTED');
    expect(await agent.destroy(a)).toBe(true);
    expect(await agent.destroy(b)).toBe(true);
  });

  it('suspend pauses, resume unpauses; destroy twice is true then false', async () => {
    const previewId = pid();
    const r = await claim(previewId, userProject('life'));
    expect(
      (await fetch(`${agent.url}/v1/previews/${previewId}/suspend`, authed(token, { method: 'POST' })))
        .status,
    ).toBe(200);
    expect(((await (await get(`/v1/previews/${previewId}/status`)).json()) as { phase: string }).phase).toBe(
      'suspended',
    );
    expect((await runtime.inspect(r.containerId))?.state).toBe('paused');
    expect(
      (await fetch(`${agent.url}/v1/previews/${previewId}/resume`, authed(token, { method: 'POST' }))).status,
    ).toBe(200);
    const page = await fetch(`${r.upstream}/`, { headers: { 'x-agent-token': token } });
    expect(page.status).toBe(200);
    const logs = (await (await get(`/v1/previews/${previewId}/logs?tail=20`)).json()) as { lines: string[] };
    expect(Array.isArray(logs.lines)).toBe(true);
    const del = () => fetch(`${agent.url}/v1/previews/${previewId}`, authed(token, { method: 'DELETE' }));
    expect(await (await del()).json()).toEqual({ destroyed: true });
    expect(await (await del()).json()).toEqual({ destroyed: false });
    expect(await runtime.inspect(r.containerId)).toBeUndefined();
    expect((await get(`/v1/previews/${previewId}/status`)).status).toBe(404);
  });
});

describe('agent restart', () => {
  it('a restarted agent adopts containers of live sessions and removes the rest', async () => {
    const config = testConfig({ WARM_POOL: 'vite-vanilla=1' });
    const token = config.AGENT_TOKEN!;
    const first = await startAgent(config);
    let second: Awaited<ReturnType<typeof startAgent>> | undefined;
    try {
      await first.agent.pools.populate();
      await first.agent.pools.settled();
      const live = pid();
      const dead = pid();
      const rl = await first.agent.claim({
        previewId: live,
        template: 'vite-vanilla',
        files: userProject('live'),
      });
      const rd = await first.agent.claim({
        previewId: dead,
        template: 'vite-vanilla',
        files: userProject('dead'),
      });
      // The agent goes away; its containers keep running.
      await first.agent.close();
      second = await startAgent(config, { liveSessions: async () => [live] });
      expect(second.agent.sessions()).toEqual([live]);
      expect(await second.runtime.inspect(rd.containerId)).toBeUndefined();
      expect((await second.runtime.inspect(rl.containerId))?.state).toBe('running');
      const page = await fetch(`${second.agent.url}/v1/previews/${live}/http/`, {
        headers: { 'x-agent-token': token },
      });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('live');
      // Edits still reach the adopted preview (its daemon token came from the container).
      const ack = await second.agent.apply(live, {
        type: 'batch',
        seq: 1,
        ops: [
          { op: 'put', path: 'src/message.js', content: 'export const message = "x";\n', encoding: 'utf8' },
        ],
      });
      expect(ack.seq).toBe(1);
      expect(await second.agent.destroy(live)).toBe(true);
      expect(await second.agent.destroy(live)).toBe(false);
    } finally {
      await second?.stop();
      await first.stop();
    }
  });
});

describe('database reachability for full-stack previews', () => {
  it('a preview reaches Postgres through the gateway forwarder, and the host loopback not at all', async () => {
    const config = testConfig({ WARM_POOL: 'vite-vanilla=0', PREVIEW_DATABASE_TARGET: '127.0.0.1:5432' });
    const { agent, runtime, stop } = await startAgent(config);
    try {
      const previewId = pid();
      const r = await agent.claim({
        previewId,
        template: 'vite-vanilla',
        files: userProject('db'),
        env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' },
      });
      expect(r.warm).toBe(false);
      const info = await runtime.docker.getContainer(r.containerId).inspect();
      // A cold claim hands the daemon the app's environment at start, as PREVIEW_APP_ENV (JSON).
      const appEnv = JSON.parse(
        (info.Config.Env ?? [])
          .find((e) => e.startsWith('PREVIEW_APP_ENV='))!
          .slice('PREVIEW_APP_ENV='.length),
      ) as Record<string, string>;
      const dbUrl = new URL(appEnv['DATABASE_URL']!);
      expect(dbUrl.hostname).toBe(runtime.gateway);
      expect(dbUrl.port).not.toBe('');
      // Postgres answers an SSLRequest with one byte, 'S' or 'N'.
      const probe = (host: string, port: string | number) =>
        `const s=require('net').connect(${port},'${host}');s.setTimeout(3000);s.on('connect',()=>s.write(Buffer.from([0,0,0,8,4,210,22,47])));s.on('data',d=>{console.log('PG',String.fromCharCode(d[0]));process.exit(0)});s.on('timeout',()=>{console.log('TIMEOUT');process.exit(1)});s.on('error',e=>{console.log('ERR',e.code);process.exit(1)});`;
      const via = await exec(runtime.docker, r.containerId, [
        'node',
        '-e',
        probe(dbUrl.hostname, dbUrl.port),
      ]);
      expect(via.out).toMatch(/PG [SN]/);
      const direct = await exec(runtime.docker, r.containerId, ['node', '-e', probe(runtime.gateway!, 5432)]);
      expect(direct.out).not.toMatch(/PG/);
      const loopback = await exec(runtime.docker, r.containerId, ['node', '-e', probe('127.0.0.1', 5432)]);
      expect(loopback.out).not.toMatch(/PG/);
    } finally {
      await stop();
    }
  });
});
