/**
 * The egress policy from inside real preview containers (the preview image, PREVIEW_IMAGE or
 * preview-base:dev). Every probe goes to a listener this test brings up on this machine: a network
 * namespace of its own holds 169.254.169.254 and a 10.x address (reached through the host's
 * forwarding path, as a cloud's metadata service and a private network would be), the host end of
 * its veth holds another 10.x address (a host address), and listeners on the preview bridge's
 * gateway stand for the router's and the agent's ports. No traffic leaves the machine. Needs root
 * (ip netns, iptables) and the Docker engine.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { promisify } from 'node:util';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DbForwarder, startDbForwarder } from '../db-forwarder.ts';
import { createDockerRuntime, type DockerRuntime } from '../runtime/docker.ts';
import { EgressFirewall } from './firewall.ts';
import { EgressGuard } from './guard.ts';
import { egressRules } from './rules.ts';

const run = promisify(execFile);
const hex = randomBytes(2).toString('hex');
const S = 16 + (Number.parseInt(hex, 16) % 200);
const NS = `ptest-${hex}`;
const VH = `pt${hex}h`;
const VN = `pt${hex}n`;
const HOST_ADDR = `10.213.${S}.1`; // on the host (INPUT path)
const NS_ADDR = `10.213.${S}.2`; // in the namespace (forwarded)
const METADATA = '169.254.169.254'; // in the namespace (forwarded)
const NS_PORT = 8080;
const NET_A = `egress-t-${hex}-a`;
const NET_B = `egress-t-${hex}-b`;
const docker = testDocker();
const fw = new EgressFirewall();

const cleanups: (() => Promise<unknown> | unknown)[] = [];
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

function listen(host: string): Promise<Server> {
  const s = createServer((c) => c.on('data', (d) => c.write(d)).on('error', () => {}));
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, host, () => resolve(s));
  });
}
const portOf = (s: Server) => (s.address() as { port: number }).port;

type Target = { name: string; host: string; port: number; connect?: string };
/** TCP probes from inside a container: `open`, an error code, `timeout`, or (through a proxy) its status line. */
const PROBE = `const net=require('net');const ts=JSON.parse(process.argv[1]);
Promise.all(ts.map(t=>new Promise(res=>{const s=net.connect({host:t.host,port:t.port});
const done=r=>{s.destroy();res([t.name,r])};s.setTimeout(4000,()=>done('timeout'));
s.on('connect',()=>{if(!t.connect)return done('open');s.write('CONNECT '+t.connect+' HTTP/1.1\\r\\nHost: '+t.connect+'\\r\\n\\r\\n');
s.once('data',d=>done(String(d).split('\\r\\n')[0]))});s.on('error',e=>done(e.code))})))
.then(r=>console.log(JSON.stringify(Object.fromEntries(r))))`;
async function probe(containerId: string, targets: Target[]): Promise<Record<string, string>> {
  const { stdout } = await run('docker', ['exec', containerId, 'node', '-e', PROBE, JSON.stringify(targets)]);
  return JSON.parse(stdout.trim()) as Record<string, string>;
}
async function ipOf(id: string, network: string): Promise<string> {
  const c = await docker.getContainer(id).inspect();
  const a = c.NetworkSettings.Networks[network]?.IPAddress;
  if (!a) throw new Error(`container ${id} has no address on ${network}`);
  return a;
}
const tagged = async (network: string) =>
  (await fw.listTagged()).filter((l) => l.includes(`net=${network}:`));

describe('egress policy from inside preview containers', () => {
  let a: DockerRuntime;
  let b: DockerRuntime;
  let a1: string;
  let a2: string;
  let b1: string;
  let gateway: string;
  let forwarder: DbForwarder;
  let agentLike: Server;
  let hostListener: Server;
  let guard: EgressGuard;
  let before: Record<string, string>;
  let targets: Target[];

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('egress int test needs root: ip netns, veth and iptables');
    // A namespace of our own, reached through the host's forwarding path.
    ip('netns', 'add', NS);
    cleanups.push(() => ip('netns', 'del', NS));
    ip('link', 'add', VH, 'type', 'veth', 'peer', 'name', VN);
    cleanups.push(() => ip('link', 'del', VH));
    ip('link', 'set', VN, 'netns', NS);
    ip('addr', 'add', `${HOST_ADDR}/30`, 'dev', VH);
    ip('link', 'set', VH, 'up');
    ip('-n', NS, 'addr', 'add', `${NS_ADDR}/30`, 'dev', VN);
    ip('-n', NS, 'addr', 'add', `${METADATA}/32`, 'dev', VN);
    ip('-n', NS, 'link', 'set', VN, 'up');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    ip('-n', NS, 'route', 'add', 'default', 'via', HOST_ADDR);
    ip('route', 'add', `${METADATA}/32`, 'via', NS_ADDR, 'dev', VH);
    cleanups.push(() => ip('route', 'del', `${METADATA}/32`, 'via', NS_ADDR, 'dev', VH));
    const nsServer: ChildProcess = spawn(
      'ip',
      [
        'netns',
        'exec',
        NS,
        process.execPath,
        '-e',
        `require('net').createServer(c=>c.on('data',d=>c.write(d)).on('error',()=>{})).listen(${NS_PORT},'0.0.0.0',()=>console.log('ready'))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => nsServer.kill());
    await new Promise<void>((resolve, reject) => {
      nsServer.stdout?.once('data', () => resolve());
      nsServer.once('exit', (code) => reject(new Error(`namespace listener exited (${code})`)));
    });
    hostListener = await listen(HOST_ADDR);
    cleanups.push(() => hostListener.close());

    const opts = {
      docker,
      image: TEST_PREVIEW_IMAGE,
      uid: 1000,
      memoryMiB: 256,
      cpus: 1,
      pidsLimit: 128,
      tmpfsMiB: 32,
      labels: { [TEST_LABEL]: '1' },
    };
    a = await createDockerRuntime({ ...opts, node: `eg-${hex}-a`, network: NET_A });
    cleanups.push(async () => {
      for (const box of await a.list()) await a.remove(box.id);
      await a.close();
      await docker
        .getNetwork(NET_A)
        .remove()
        .catch(() => {});
    });
    b = await createDockerRuntime({ ...opts, node: `eg-${hex}-b`, network: NET_B });
    cleanups.push(async () => {
      for (const box of await b.list()) await b.remove(box.id);
      await b.close();
      await docker
        .getNetwork(NET_B)
        .remove()
        .catch(() => {});
    });
    gateway = a.gateway ?? '';
    // The database forwarder (to an echo server standing for Postgres) and an agent-like port.
    const db = await listen('127.0.0.1');
    cleanups.push(() => db.close());
    forwarder = await startDbForwarder({
      listenHost: gateway,
      target: { host: '127.0.0.1', port: portOf(db) },
    });
    cleanups.push(() => forwarder.close());
    agentLike = await listen(gateway);
    cleanups.push(() => agentLike.close());

    const token = randomBytes(16).toString('hex');
    [a1, a2, b1] = (
      await Promise.all([
        a.create({ template: 'vite-vanilla', daemonToken: token }),
        a.create({ template: 'vite-vanilla', daemonToken: token }),
        b.create({ template: 'vite-vanilla', daemonToken: token }),
      ])
    ).map((x) => x.id) as [string, string, string];
    targets = [
      { name: 'metadata', host: METADATA, port: NS_PORT },
      { name: 'private', host: NS_ADDR, port: NS_PORT },
      { name: 'hostAddress', host: HOST_ADDR, port: portOf(hostListener) },
      { name: 'agentPort', host: gateway, port: portOf(agentLike) },
      { name: 'samePreviewNet', host: await ipOf(a2, NET_A), port: 17380 },
      { name: 'otherPreviewNet', host: await ipOf(b1, NET_B), port: 17380 },
      { name: 'forwarder', host: gateway, port: forwarder.port },
    ];
    // Without rules, what the policy must stop is reachable: the probes below are not vacuous.
    before = await probe(a1, targets);

    guard = await EgressGuard.start({
      runtime: a,
      mode: 'registry-only',
      registry: `http://${NS_ADDR}:${NS_PORT}/`,
      hostPorts: [forwarder.port],
      checkMs: 0,
    });
    cleanups.push(async () => {
      await guard.removeRules();
      await guard.close();
    });
  }, 180_000);

  afterAll(async () => {
    const errors: unknown[] = [];
    for (const c of cleanups.reverse())
      try {
        await c();
      } catch (e) {
        errors.push(e);
      }
    if (errors.length) throw new AggregateError(errors, 'egress test cleanup failed');
  }, 60_000);

  it('without rules, metadata, private and host addresses answer (control)', () => {
    expect(before).toMatchObject({
      metadata: 'open',
      private: 'open',
      hostAddress: 'open',
      agentPort: 'open',
    });
  });

  it('with the rules: metadata, private ranges, host ports and other previews are unreachable; the forwarder is reachable', async () => {
    const after = await probe(a1, targets);
    expect(after).toEqual({
      metadata: 'EHOSTUNREACH',
      private: 'EHOSTUNREACH',
      hostAddress: 'EHOSTUNREACH',
      agentPort: 'EHOSTUNREACH',
      samePreviewNet: expect.not.stringMatching(/^open$/),
      otherPreviewNet: 'EHOSTUNREACH',
      forwarder: 'open',
    });
  });

  it('registry-only: the proxy tunnels to the registry only', async () => {
    const proxy = guard.proxy!;
    expect(guard.sandboxEnv).toMatchObject({ npm_config_https_proxy: proxy.url, HTTPS_PROXY: proxy.url });
    const r = await probe(a1, [
      { name: 'registry', host: proxy.host, port: proxy.port, connect: `${NS_ADDR}:${NS_PORT}` },
      { name: 'metadata', host: proxy.host, port: proxy.port, connect: `${METADATA}:${NS_PORT}` },
      { name: 'hostPort', host: proxy.host, port: proxy.port, connect: `${gateway}:${portOf(agentLike)}` },
    ]);
    expect(r).toEqual({
      registry: 'HTTP/1.1 200 Connection Established',
      metadata: 'HTTP/1.1 403 Forbidden',
      hostPort: 'HTTP/1.1 403 Forbidden',
    });
  });

  it('is idempotent, and a removed rule is put back by the check', async () => {
    const rules = await tagged(NET_A);
    expect(rules.length).toBeGreaterThan(10);
    await guard.ensure();
    await guard.ensure();
    expect(await tagged(NET_A)).toEqual(rules);
    const set = guard.rules!;
    const fwd = set.families[0]!.chains[0]!.name;
    await run('iptables', ['-w', '-D', fwd, '2']);
    expect(await fw.check(set, a.network.bridge!)).toBe(false);
    await guard.ensure();
    expect(await fw.check(set, a.network.bridge!)).toBe(true);
    expect(await tagged(NET_A)).toEqual(rules);
  });

  it("a removed network's rules are swept by the next check", async () => {
    const bridgeB = b.network.bridge!;
    const setB = egressRules({
      network: NET_B,
      bridge: bridgeB,
      gateway: b.gateway!,
      mode: 'none',
      hostPorts: [],
    });
    await fw.apply(setB, bridgeB);
    expect((await tagged(NET_B)).length).toBeGreaterThan(0);
    await b.remove(b1);
    await docker.getNetwork(NET_B).remove();
    await guard.ensure();
    expect(await tagged(NET_B)).toEqual([]);
  });

  it('removeRules removes every rule of the network', async () => {
    await guard.removeRules();
    expect(await tagged(NET_A)).toEqual([]);
  });
});
