/**
 * Issue 14, "Node loss with real processes": two pool agents run as their own processes
 * (`node --import tsx pool-agent/src/main.ts`, as deployed) on the Docker engine, registered with a
 * router served on a loopback port that runs its real scheduled jobs (reconcile, liveness from
 * heartbeats; intervals shortened through the config). An editor is connected to a preview over the
 * router's sync socket and watches the preview's SSE stream. While the editor keeps sending edits,
 * the agent holding the preview is killed with SIGKILL. The router marks the session `migrating`,
 * re-places it on the other agent from `project_files`, the editor's sync resumes, and the files the
 * new sandbox serves equal the editor's state. The killed agent, restarted under the same node name,
 * removes the sandbox it left behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { serve } from '@hono/node-server';
import { TEST_LABEL, TEST_PREVIEW_IMAGE, testDocker } from '@preview/testkit';
import type { FileOp } from '@preview/tiers';
import { createDockerTier } from '@preview/tiers/docker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST_CA } from '../test/docker-node.ts';
import { bearer, createHarness, type Harness } from '../test/harness.ts';
import { connectRawEditor } from '../test/sync/editor.ts';

const REPO = resolve(import.meta.dirname, '../..');
const NETWORK = 'preview-net-test';
const FILES = {
  'index.html':
    '<!doctype html><html><body><div id="app"></div><script type="module" src="/main.js"></script></body></html>',
  'main.js': 'document.querySelector("#app").textContent = "node loss";\n',
  'notes/start.txt': 'stored at create\n',
};

/** One pool-agent process and what it printed (pino JSON lines). */
interface AgentProcess {
  name: string;
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a value other than undefined, or fails after `ms` with `what`. */
async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 240_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** A GET with an explicit Host through the router's server (the preview proxy). */
function hostGet(port: number, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((ok, fail) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

/** The preview's SSE stream as the editor reads it: every event, in order. */
async function openEvents(url: string, jwt: string) {
  const ac = new AbortController();
  const res = await fetch(url, { headers: bearer(jwt), signal: ac.signal });
  expect(res.status).toBe(200);
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  void (async () => {
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      buf += value;
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (data) events.push({ event, data: JSON.parse(data) as Record<string, unknown> });
      }
    }
  })();
  return { events, close: () => ac.abort() };
}

describe('node loss: kill -9 of a real pool-agent process holding a preview with an editor connected', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  const agents = new Map<string, AgentProcess>();
  const names = ['nl-a', 'nl-b'].map((n) => `${n}-${randomBytes(4).toString('hex')}`);

  function startAgent(name: string): AgentProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', 'pool-agent/src/main.ts'], {
      cwd: REPO,
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: process.env['HOME'] ?? '/root',
        ROUTER_URL: `http://127.0.0.1:${port}`,
        ROUTER_JOIN_TOKEN: h.joinToken,
        NODE_NAME: name,
        AGENT_PORT: '0',
        PREVIEW_IMAGE: TEST_PREVIEW_IMAGE,
        PREVIEW_NETWORK: NETWORK,
        PREVIEW_LABELS: `${TEST_LABEL}=1`,
        NODE_SLOTS: '3',
        WARM_POOL: 'vite-vanilla=1',
        PREVIEW_MEMORY_MIB: '768',
        PREVIEW_DISK_BACKEND: 'none',
        PREVIEW_NODE_EXTRA_CA_CERTS: HOST_CA,
        READY_TIMEOUT_MS: '240000',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    const collect = (d: Buffer) => lines.push(...d.toString('utf8').split('\n').filter(Boolean));
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const a = { name, child, lines, exited };
    agents.set(name, a);
    return a;
  }

  /** Waits until the agent process said it listens (it registered and reconciled its sandboxes first). */
  const listening = (a: AgentProcess) =>
    until(`agent ${a.name} to listen; output: ${a.lines.slice(-10).join('\n')}`, async () => {
      if (a.child.exitCode !== null)
        throw new Error(`agent ${a.name} exited: ${a.lines.slice(-20).join('\n')}`);
      return a.lines.some((l) => l.includes('pool agent listening')) ? true : undefined;
    });

  const nodeIdOf = async (name: string) =>
    (await h.db.pool.query<{ id: string }>('SELECT id::text FROM preview_nodes WHERE name = $1', [name]))
      .rows[0]?.id;

  /** The node's heartbeat says its vite-vanilla warm pool is full. */
  const warm = (name: string) =>
    until(`warm pool of ${name}`, async () => {
      const id = await nodeIdOf(name);
      const beat = id ? await h.router.nodes.liveness.get(id) : undefined;
      return (beat?.capacity.warm['vite-vanilla'] ?? 0) >= 1 ? id : undefined;
    });

  /**
   * The containers of `previewId` on node `name`, as the Docker engine lists them: a claimed warm
   * sandbox is renamed `pv-<node>--<previewId>` (labels cannot change after creation).
   */
  const containersOf = async (name: string, previewId: string) =>
    (
      await testDocker().listContainers({
        all: true,
        filters: { label: [`preview.node=${name}`, `${TEST_LABEL}=1`] },
      })
    ).filter(
      (c) => c.Labels['preview.session'] === previewId || c.Names.includes(`/pv-${name}--${previewId}`),
    );

  beforeAll(async () => {
    h = await createHarness({
      redis: true,
      jobs: true,
      tiers: ({ nodeDirectory }) => ({ docker: createDockerTier(nodeDirectory) }),
      env: { HEARTBEAT_MS: '1000', NODE_TTL_MS: '4000', RECONCILE_MS: '1000' },
    });
    // Only the two agent processes place: the harness's in-process node is forgotten.
    await h.router.nodes.liveness.forget(h.nodeId);
    server = serve({ fetch: h.router.app.fetch, hostname: '127.0.0.1', port: 0 }) as unknown as http.Server;
    await new Promise((r) => server.once('listening', r));
    h.router.attach(server);
    port = (server.address() as AddressInfo).port;
    // One after the other: both agents share the test preview network, which the first creates.
    for (const name of names) {
      await listening(startAgent(name));
      await warm(name);
    }
  }, 600_000);

  afterAll(async () => {
    for (const a of agents.values()) {
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGTERM');
      await Promise.race([a.exited, sleep(30_000)]);
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
    }
    const docker = testDocker();
    for (const name of names)
      for (const c of await docker
        .listContainers({ all: true, filters: { label: [`preview.node=${name}`, `${TEST_LABEL}=1`] } })
        .catch(() => []))
        await docker
          .getContainer(c.Id)
          .remove({ force: true, v: true })
          .catch(() => {});
    if (server) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    await h?.close();
  }, 120_000);

  it('re-places the preview on the other agent, the editor’s sync resumes, no persisted edit is lost, the restarted agent removes its orphan', {
    timeout: 900_000,
  }, async () => {
    const res = await h.router.app.request('/v1/previews', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(h.alice.jwt) },
      body: JSON.stringify({ files: FILES, serverOnly: true }),
    });
    const view = (await res.json()) as { id: string; tier: string };
    expect(res.status, JSON.stringify(view)).toBe(201);
    expect(view.tier, JSON.stringify(view)).toBe('docker');
    const id = view.id;
    await h.router.previews.waitReady(id, 240_000);
    const before = await h.router.previews.store.get(id);
    const nodeIds = await Promise.all(names.map(nodeIdOf));
    const victimIndex = nodeIds.indexOf(before?.nodeId ?? '');
    expect(victimIndex, JSON.stringify(before)).toBeGreaterThanOrEqual(0);
    const victim = agents.get(names[victimIndex]!)!;
    const survivorId = nodeIds[1 - victimIndex]!;

    const sse = await openEvents(`http://127.0.0.1:${port}/v1/previews/${id}/events`, h.alice.jwt);
    const editor = await connectRawEditor(
      `ws://127.0.0.1:${port}/v1/previews/${id}/sync?access_token=${h.alice.jwt}`,
      { clientId: `editor-${randomBytes(4).toString('hex')}` },
    );

    // The editor's view of the project, edit by edit.
    const state = new Map<string, string>(Object.entries(FILES));
    let seq = 0;
    const edit = (ops: FileOp[]) => {
      seq++;
      for (const op of ops) {
        if (op.op === 'put') state.set(op.path, op.content);
        else if (op.op === 'delete') state.delete(op.path);
        else {
          const v = state.get(op.from);
          if (v !== undefined) {
            state.set(op.to, v);
            state.delete(op.from);
          }
        }
      }
      editor.send({ type: 'batch', seq, ops });
      return seq;
    };
    const put = (path: string, content: string): FileOp => ({ op: 'put', path, content, encoding: 'utf8' });
    const persistedSeq = () =>
      Math.max(0, ...editor.frames.map((f) => (f.type === 'ack' && f.stage === 'persisted' ? f.seq : 0)));

    // Edits before the loss, the last of them acked `persisted`.
    // Each writes a file of its own too, which nothing later touches: its loss would show at the end.
    for (let i = 0; i < 8; i++)
      edit([put(`notes/n${i % 4}.txt`, `before ${i}\n`), put(`notes/before-${i}.txt`, `kept ${i}\n`)]);
    edit([{ op: 'rename', from: 'notes/start.txt', to: 'notes/renamed.txt' }]);
    const settled = edit([put('notes/n0.txt', 'before, settled\n'), { op: 'delete', path: 'notes/n3.txt' }]);
    await editor.waitFor(() => editor.acked(settled, 'persisted'), 60_000);

    // The editor keeps typing while the agent holding the preview is killed.
    let typing = true;
    let typed = 0;
    const typist = (async () => {
      while (typing && !editor.closed) {
        edit([put(`notes/n${typed % 4}.txt`, `during ${typed}\n`), put('notes/log.txt', `line ${typed}\n`)]);
        typed++;
        await sleep(150);
      }
    })();
    await until('a few edits in flight', async () => (typed >= 3 ? true : undefined), 30_000);
    victim.child.kill('SIGKILL');
    await victim.exited;
    const persistedAtKill = persistedSeq();
    const typedAtKill = typed;
    // Edits the editor sends while the node is gone (no sandbox takes them until the move).
    await until('edits after the kill', async () => (typed >= typedAtKill + 3 ? true : undefined), 60_000);

    // The router sees the node die, marks the session migrating (the editor's SSE says so) and
    // re-places it on the surviving agent.
    await until(
      'the SSE event migrating',
      async () => (sse.events.some((e) => e.data['state'] === 'migrating') ? true : undefined),
      120_000,
    );
    await until(
      'the preview ready on the other node',
      async () => {
        const s = await h.router.previews.store.get(id);
        return s?.state === 'ready' && s.nodeId === survivorId ? s : undefined;
      },
      300_000,
    );
    const migrating = sse.events.findIndex((e) => e.data['state'] === 'migrating');
    await until(
      'the SSE event ready after migrating',
      async () => (sse.events.slice(migrating).some((e) => e.data['state'] === 'ready') ? true : undefined),
      60_000,
    );
    typing = false;
    await typist;
    expect(editor.closed, JSON.stringify(editor.closed)).toBeUndefined();

    // The editor's sync resumed: an edit after the move is applied by the new sandbox, and
    // everything the editor sent is persisted.
    const after = edit([put('notes/after.txt', 'after the move\n'), put('notes/n1.txt', 'final n1\n')]);
    await editor.waitFor(() => editor.acked(after, 'applied'), 120_000);
    await editor.waitFor(() => editor.acked(after, 'persisted'), 120_000);
    expect(persistedSeq()).toBe(seq);
    expect(persistedAtKill).toBeGreaterThanOrEqual(settled);
    expect(typed).toBeGreaterThanOrEqual(typedAtKill + 3);
    const errors = editor.frames.filter((f) => f.type === 'error');
    expect(errors, JSON.stringify(errors)).toEqual([]);

    // The new sandbox serves the editor's state, file by file, through the preview's HTTP.
    const link = (await (
      await h.router.app.request(`/v1/previews/${id}`, { headers: bearer(h.alice.jwt) })
    ).json()) as { previewUrl: string };
    const token = new URL(link.previewUrl).searchParams.get('token')!;
    const host = `${id}.preview.localhost`;
    const redirect = await hostGet(port, `/?token=${token}`, { host });
    const cookie = String(redirect.headers['set-cookie']?.[0]).split(';')[0]!;
    const notes = [...state.keys()].filter((p) => p.startsWith('notes/')).sort();
    expect(notes).toContain('notes/renamed.txt');
    expect(notes).not.toContain('notes/start.txt');
    for (const path of notes) {
      const r = await hostGet(port, `/${path}`, { host, cookie, 'sec-fetch-dest': 'empty' });
      expect(r.status, path).toBe(200);
      expect(r.body, path).toBe(state.get(path));
    }
    for (const gone of ['notes/start.txt'])
      expect((await hostGet(port, `/${gone}`, { host, cookie })).body).not.toBe(FILES['notes/start.txt']);
    // And project_files, what a later migration would start from, is the editor's state too.
    const stored = await h.router.previews.store.loadFiles(id);
    const storedText = Object.fromEntries(
      Object.entries(stored).map(([p, v]) => [p, typeof v === 'string' ? v : v.content]),
    );
    expect(storedText).toEqual(Object.fromEntries(state));

    sse.close();
    editor.close();

    // The killed node left its sandbox behind; restarted under the same name, its agent removes it.
    expect(await containersOf(victim.name, id)).toHaveLength(1);
    const restarted = startAgent(victim.name);
    await listening(restarted);
    expect(await containersOf(victim.name, id)).toEqual([]);
    expect(await nodeIdOf(victim.name)).toBe(nodeIds[victimIndex]);
    // The survivor still holds the preview.
    expect((await h.router.previews.store.get(id))?.nodeId).toBe(survivorId);
    expect(await containersOf(names[1 - victimIndex]!, id)).toHaveLength(1);
  });
});
