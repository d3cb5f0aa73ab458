import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { FlyLease, FlyMachine, FlyMachineConfig } from '../../src/fly/machines-client.ts';
import { OpenApiValidator } from './openapi-validator.ts';

/**
 * An in-repo fake of Fly's Machines API: a real HTTP server on a random port that serves the routes
 * the fly tier calls (create, get, list, wait, start, stop, suspend, destroy, leases), validates every
 * request and response body against the schemas of Fly's published OpenAPI document (the fixture
 * whose path the caller passes: `FLY_MACHINES_API_FIXTURE`), follows Fly's machine state
 * machine, and can inject 429/5xx and per-region `insufficient_capacity`. A second server plays the
 * app's public edge (`https://<app>.fly.dev`): it routes by `fly-force-instance-id`, wakes stopped or
 * suspended machines whose service has `autostart`, and proxies HTTP and WebSocket upgrades to what
 * the machine runs (with `daemonRunner(...)`, a real preview-daemon host process).
 *
 * @example
 * const fake = await startFakeMachinesApi({ apiSchemaPath: FLY_MACHINES_API_FIXTURE, regions: ['ams', 'fra'] });
 * const client = new FlyMachinesClient({ token: fake.token, app: fake.app, baseUrl: fake.url });
 * fake.setRegionCapacity('ams', false); // creates in ams now answer insufficient_capacity
 * fake.injectFault({ status: 429, count: 2, retryAfterS: 0 });
 * await fake.close();
 */

export type FakeMachineState =
  | 'created'
  | 'starting'
  | 'started'
  | 'stopping'
  | 'stopped'
  | 'suspending'
  | 'suspended'
  | 'destroying'
  | 'destroyed';

/** What a started machine runs: something listening on a loopback port. */
export interface MachineProcess {
  port: number;
  /** Freeze (suspend) and thaw (start after suspend). */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  /** Captured output, for debugging failed tests. */
  output(): string;
}

export type MachineRunner = (machine: {
  id: string;
  config: FlyMachineConfig;
}) => Promise<MachineProcess | undefined>;

export interface FaultSpec {
  status: number;
  /** How many matching requests fail (default 1). */
  count?: number;
  method?: string;
  /** Matched against the request path (without `/v1`). */
  path?: RegExp;
  retryAfterS?: number;
  /** Fail after the request took effect (a 5xx whose create really happened). */
  after?: boolean;
}

export interface FakeMachinesApiOptions {
  app?: string;
  token?: string;
  regions?: string[];
  /** Delay of each state transition (created → starting → started …), default 25 ms. */
  transitionMs?: number;
  /** What a started machine runs (e.g. `daemonRunner({...})`); `null` or unset: nothing listens. */
  runner?: MachineRunner | null;
  /** The Machines API schemas (JSON OpenAPI subset) every body is validated against: `FLY_MACHINES_API_FIXTURE`. */
  apiSchemaPath: string;
  /** Reject unknown fields too (default true); see OpenApiValidator. */
  strict?: boolean;
}

export interface FakeRequestLog {
  method: string;
  path: string;
  query: string;
  status: number;
  leaseNonce?: string;
  authorization?: string;
}

interface FakeMachine {
  id: string;
  name: string;
  region: string;
  state: FakeMachineState;
  instanceId: string;
  config: FlyMachineConfig;
  createdAt: string;
  updatedAt: string;
  lease?: FlyLease & { expiresAtMs: number };
  process?: MachineProcess;
  /** Bumps on every transition so stale timers do nothing. */
  epoch: number;
  waiters: Set<() => void>;
}

export interface FakeMachinesApi {
  /** Base URL of the API, ending in `/v1`. */
  url: string;
  /** The app's public edge (what `https://<app>.fly.dev` is in production). */
  edgeUrl: string;
  app: string;
  token: string;
  regions: string[];
  requests: FakeRequestLog[];
  /** Bodies that failed validation (requests answered 400; responses are fake bugs, answered 500). */
  validationErrors: string[];
  validator: OpenApiValidator;
  injectFault(fault: FaultSpec): void;
  setRegionCapacity(region: string, hasCapacity: boolean): void;
  machine(id: string): (FlyMachine & { processPort?: number }) | undefined;
  machines(): FlyMachine[];
  close(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createNetServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** Where {@link daemonRunner} finds what a machine's image holds; all paths absolute. */
export interface DaemonRunnerOptions {
  /** The daemon's entry: the built `docker/preview-daemon/dist/daemon.mjs`, or `src/main.ts` with `nodeArgs: ['--import', 'tsx']`. */
  entry: string;
  nodeArgs?: string[];
  /** The starter templates the daemon seeds an empty project from (the repository's `templates/`). */
  templatesDir: string;
  /** A `node_modules` the project resolves its dependencies (vite, react) from, as the image's installed ones. */
  nodeModules: string;
  extraEnv?: Record<string, string>;
}

/**
 * Runs the preview-daemon as a host process with the machine's env (PREVIEW_TEMPLATE,
 * PREVIEW_DAEMON_TOKEN, …), a free loopback port and a fresh project directory: what the Fly image's
 * entrypoint does inside a real machine.
 * @throws Error naming the option whose path does not exist.
 */
export function daemonRunner(options: DaemonRunnerOptions): MachineRunner {
  for (const key of ['entry', 'templatesDir', 'nodeModules'] as const)
    if (!existsSync(options[key])) throw new Error(`daemonRunner: ${key} ${options[key]} does not exist`);
  const entry = options.entry;
  return async (machine) => {
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), `fly-fake-${machine.id}-`));
    const projectDir = join(dir, 'project');
    // In the image the template's dependencies are installed; on the host the project resolves
    // them (vite, react) upward from its directory, through this link to the repo's node_modules.
    await symlink(options.nodeModules, join(dir, 'node_modules'), 'dir');
    const guestProject = machine.config.env?.['PREVIEW_PROJECT_DIR'] ?? '/project';
    // Fly writes `config.files` into the machine before its process starts; here the guest's
    // project directory maps onto this machine's temporary one.
    for (const f of machine.config.files ?? []) {
      if (!f.guest_path?.startsWith(`${guestProject}/`) || f.raw_value === undefined) continue;
      const target = resolve(projectDir, f.guest_path.slice(guestProject.length + 1));
      if (!target.startsWith(`${projectDir}/`)) continue;
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, Buffer.from(f.raw_value, 'base64'));
    }
    let out = '';
    const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), entry], {
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: dir,
        ...machine.config.env,
        PREVIEW_TEMPLATES_DIR: options.templatesDir,
        PREVIEW_CACHE_DIR: join(dir, 'cache'),
        PREVIEW_DAEMON_HOST: '127.0.0.1',
        ...options.extraEnv,
        PREVIEW_DAEMON_PORT: String(port),
        PREVIEW_PROJECT_DIR: projectDir,
        FLY_MACHINE_ID: machine.id,
        FLY_APP_NAME: 'fake',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => {
      out = (out + b.toString()).slice(-20_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    return {
      port,
      pause: () => child.kill('SIGSTOP'),
      resume: () => child.kill('SIGCONT'),
      output: () => out,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGCONT');
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
          await exited;
          clearTimeout(t);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly flyStatus?: 'insufficient_capacity' | 'unknown',
  ) {
    super(message);
  }
}

const machineId = () => randomBytes(7).toString('hex');

/**
 * Starts the fake API and its edge on loopback ports (see the module comment).
 * @throws Error when `apiSchemaPath` cannot be read as the Machines API schemas.
 */
export async function startFakeMachinesApi(options: FakeMachinesApiOptions): Promise<FakeMachinesApi> {
  const app = options.app ?? `fake-${randomBytes(3).toString('hex')}`;
  const token = options.token ?? `fly-test-${randomBytes(12).toString('hex')}`;
  const regions = options.regions ?? ['ams', 'fra', 'cdg'];
  const transitionMs = options.transitionMs ?? 25;
  const runner = options.runner ?? undefined;
  const validator = OpenApiValidator.load(options.apiSchemaPath, { strict: options.strict ?? true });
  const machines = new Map<string, FakeMachine>();
  const noCapacity = new Set<string>();
  const faults: Array<FaultSpec & { left: number }> = [];
  const requests: FakeRequestLog[] = [];
  const validationErrors: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const now = () => new Date().toISOString();
  const view = (m: FakeMachine): FlyMachine => ({
    id: m.id,
    name: m.name,
    state: m.state,
    region: m.region,
    instance_id: m.instanceId,
    private_ip: `fdaa:0:1:a7b:1::${m.id.slice(0, 4)}`,
    config: m.config,
    created_at: m.createdAt,
    updated_at: m.updatedAt,
  });

  const setState = (m: FakeMachine, state: FakeMachineState) => {
    m.state = state;
    m.updatedAt = now();
    m.epoch++;
    for (const w of m.waiters) w();
  };
  const later = (m: FakeMachine, fn: () => void | Promise<void>) => {
    const epoch = m.epoch;
    const t = setTimeout(() => {
      timers.delete(t);
      if (closed || m.epoch !== epoch) return;
      void Promise.resolve(fn()).catch(() => {});
    }, transitionMs);
    timers.add(t);
  };

  const startMachine = (m: FakeMachine) => {
    const wasSuspended = m.state === 'suspended';
    setState(m, 'starting');
    later(m, async () => {
      if (wasSuspended && m.process) m.process.resume();
      else if (!m.process && runner) m.process = await runner({ id: m.id, config: m.config });
      if (m.state !== 'starting') {
        // Destroyed or stopped while the process came up.
        await m.process?.stop();
        m.process = undefined;
        return;
      }
      setState(m, 'started');
    });
  };
  const stopProcess = async (m: FakeMachine) => {
    const p = m.process;
    m.process = undefined;
    await p?.stop();
  };

  const leaseHeld = (m: FakeMachine, nonce: string | undefined) => {
    if (m.lease && m.lease.expiresAtMs <= Date.now()) m.lease = undefined;
    if (m.lease && m.lease.nonce !== nonce)
      throw new HttpError(
        409,
        `machine ${m.id} lease currently held by ${m.lease.owner}, expires at ${new Date(m.lease.expiresAtMs).toISOString()}`,
      );
  };
  const find = (id: string) => {
    const m = machines.get(id);
    if (!m || m.state === 'destroyed') throw new HttpError(404, 'machine not found');
    return m;
  };

  async function handle(
    method: string,
    path: string,
    query: URLSearchParams,
    body: unknown,
    nonce: string | undefined,
  ): Promise<{ status: number; body: unknown; template: string }> {
    const appPrefix = `/apps/${app}`;
    if (!path.startsWith(`${appPrefix}/`) && path !== appPrefix) throw new HttpError(404, `app not found`);
    const template =
      path === `${appPrefix}/machines/${path.split('/')[4]}/suspend`
        ? '/apps/{app_name}/machines/{machine_id}/suspend'
        : validator.matchPath(path);
    if (!template) throw new HttpError(404, `no route ${method} ${path}`);
    const rest = path.slice(appPrefix.length).split('/').filter(Boolean); // ['machines', id?, action?]
    const id = rest[1];
    const action = rest[2];
    const ok = { ok: true };

    if (rest[0] !== 'machines') throw new HttpError(404, `the fake serves only machines routes (${path})`);
    if (!id) {
      if (method === 'GET') {
        const includeDeleted = query.get('include_deleted') === 'true';
        const region = query.get('region');
        const meta = [...query.entries()].filter(([k]) => k.startsWith('metadata.'));
        const list = [...machines.values()].filter(
          (m) =>
            (includeDeleted || m.state !== 'destroyed') &&
            (!region || m.region === region) &&
            meta.every(([k, v]) => m.config.metadata?.[k.slice('metadata.'.length)] === v),
        );
        return { status: 200, body: list.map(view), template };
      }
      if (method === 'POST') {
        const req = body as {
          config: FlyMachineConfig;
          region?: string;
          name?: string;
          skip_launch?: boolean;
        };
        if (!req?.config?.image) throw new HttpError(400, 'config.image is required');
        const region = req.region ?? regions[0]!;
        if (!regions.includes(region)) throw new HttpError(400, `invalid region ${region}`);
        if (noCapacity.has(region))
          throw new HttpError(
            412,
            `insufficient resources available to fulfill request in region ${region}`,
            'insufficient_capacity',
          );
        const m: FakeMachine = {
          id: machineId(),
          name: req.name ?? `fake-${randomBytes(4).toString('hex')}`,
          region,
          state: 'created',
          instanceId: randomBytes(13).toString('hex').toUpperCase(),
          config: req.config,
          createdAt: now(),
          updatedAt: now(),
          epoch: 0,
          waiters: new Set(),
        };
        machines.set(m.id, m);
        if (!req.skip_launch) startMachine(m);
        return { status: 200, body: view(m), template };
      }
    }
    if (!id) throw new HttpError(405, `method ${method} not allowed`);

    if (!action) {
      if (method === 'GET') return { status: 200, body: view(find(id)), template };
      if (method === 'DELETE') {
        const m = find(id);
        leaseHeld(m, nonce);
        const force = query.get('force') === 'true';
        if (!force && !['stopped', 'suspended', 'created'].includes(m.state))
          throw new HttpError(
            412,
            `unable to destroy machine, not currently stopped or suspended (state ${m.state})`,
          );
        setState(m, 'destroying');
        later(m, async () => {
          await stopProcess(m);
          m.lease = undefined;
          setState(m, 'destroyed');
        });
        return { status: 200, body: ok, template };
      }
    }

    const m = find(id);
    switch (`${method} ${action}`) {
      case 'GET wait': {
        const want = query.get('state') ?? 'started';
        if (!['started', 'stopped', 'destroyed', 'suspended'].includes(want))
          throw new HttpError(400, `invalid state "${want}"`);
        const instance = query.get('instance_id');
        if (instance && instance !== m.instanceId)
          throw new HttpError(400, `instance_id ${instance} is not current`);
        const timeoutS = Math.min(60, Math.max(1, Number(query.get('timeout') ?? 60) || 60));
        const reached = await new Promise<boolean>((r) => {
          const check = () => {
            if (m.state === want) {
              cleanup();
              r(true);
            }
          };
          const t = setTimeout(() => {
            cleanup();
            r(false);
          }, timeoutS * 1000);
          timers.add(t);
          const cleanup = () => {
            clearTimeout(t);
            timers.delete(t);
            m.waiters.delete(check);
          };
          m.waiters.add(check);
          check();
        });
        if (!reached) throw new HttpError(408, `deadline_exceeded: machine did not reach ${want}`);
        return { status: 200, body: ok, template };
      }
      case 'POST start': {
        leaseHeld(m, nonce);
        const previous = m.state;
        if (['created', 'stopped', 'suspended'].includes(m.state)) startMachine(m);
        else if (!['started', 'starting'].includes(m.state))
          throw new HttpError(412, `machine is ${m.state}, cannot start`);
        return { status: 200, body: { previous_state: previous }, template };
      }
      case 'POST stop': {
        leaseHeld(m, nonce);
        if (m.state === 'stopped') return { status: 200, body: ok, template };
        if (!['started', 'starting', 'suspended'].includes(m.state))
          throw new HttpError(400, `machine is ${m.state}, cannot stop`);
        setState(m, 'stopping');
        later(m, async () => {
          await stopProcess(m);
          setState(m, 'stopped');
        });
        return { status: 200, body: ok, template };
      }
      case 'POST suspend': {
        leaseHeld(m, nonce);
        if (m.state === 'suspended') return { status: 200, body: ok, template };
        if (m.state !== 'started')
          throw new HttpError(412, `machine is ${m.state}, only a started machine can suspend`);
        setState(m, 'suspending');
        later(m, () => {
          m.process?.pause();
          setState(m, 'suspended');
        });
        return { status: 200, body: ok, template };
      }
      case 'POST lease': {
        leaseHeld(m, nonce);
        const ttl = (body as { ttl?: number } | undefined)?.ttl ?? 30;
        const lease = {
          nonce: m.lease?.nonce ?? randomBytes(6).toString('hex'),
          owner: 'fake@example.com',
          description: (body as { description?: string } | undefined)?.description ?? '',
          version: m.instanceId,
          expires_at: Math.floor(Date.now() / 1000) + ttl,
          expiresAtMs: Date.now() + ttl * 1000,
        };
        m.lease = lease;
        const { expiresAtMs: _, ...wire } = lease;
        return { status: 200, body: wire, template };
      }
      case 'GET lease': {
        if (m.lease && m.lease.expiresAtMs <= Date.now()) m.lease = undefined;
        if (!m.lease) throw new HttpError(404, 'no active lease');
        const { expiresAtMs: _, ...wire } = m.lease;
        return { status: 200, body: wire, template };
      }
      case 'DELETE lease': {
        if (m.lease && m.lease.nonce !== nonce) throw new HttpError(409, 'lease nonce does not match');
        m.lease = undefined;
        return { status: 200, body: ok, template };
      }
    }
    throw new HttpError(405, `${method} ${action} is not served by the fake`);
  }

  const api: Server = createServer((req, res) => {
    void (async () => {
      const u = new URL(req.url ?? '/', 'http://fake');
      const method = req.method ?? 'GET';
      const path = u.pathname.replace(/^\/v1/, '');
      const nonce = req.headers['fly-machine-lease-nonce'] as string | undefined;
      let status = 500;
      let out: unknown;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      try {
        if (req.headers.authorization !== `Bearer ${token}`) throw new HttpError(401, 'unauthorized');
        const fault = faults.find(
          (f) => f.left > 0 && (!f.method || f.method === method) && (!f.path || f.path.test(path)),
        );
        if (fault && !fault.after) {
          fault.left--;
          if (fault.retryAfterS !== undefined) headers['retry-after'] = String(fault.retryAfterS);
          throw new HttpError(
            fault.status,
            fault.status === 429 ? 'rate limit exceeded' : 'injected server error',
          );
        }
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const raw = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        if (raw) {
          try {
            body = JSON.parse(raw);
          } catch {
            throw new HttpError(400, 'request body is not JSON');
          }
        }
        const template = validator.matchPath(path);
        if (template) {
          const problems = validator.validateRequest(method, template, body);
          if (problems.length) {
            validationErrors.push(`request ${method} ${template}: ${problems.join('; ')}`);
            throw new HttpError(400, `request does not match the OpenAPI schema: ${problems.join('; ')}`);
          }
        }
        const r = await handle(method, path, u.searchParams, body, nonce);
        if (fault?.after) {
          fault.left--;
          throw new HttpError(fault.status, 'injected server error after the request took effect');
        }
        status = r.status;
        out = r.body;
        if (r.template !== '/apps/{app_name}/machines/{machine_id}/suspend') {
          const problems = validator.validateResponse(method, r.template, status, out);
          if (problems.length) {
            validationErrors.push(`response ${method} ${r.template} ${status}: ${problems.join('; ')}`);
            status = 500;
            out = { error: `fake produced an invalid response: ${problems.join('; ')}` };
          }
        } else if (typeof (out as { ok?: unknown }).ok !== 'boolean') {
          status = 500;
          out = { error: 'fake produced an invalid suspend response' };
        }
      } catch (e) {
        if (e instanceof HttpError) {
          status = e.status;
          out = e.flyStatus ? { error: e.message, status: e.flyStatus } : { error: e.message };
          const problems = validator.validateSchema('ErrorResponse', out);
          if (problems.length) validationErrors.push(`error body: ${problems.join('; ')}`);
        } else {
          status = 500;
          out = { error: (e as Error).message };
        }
      }
      requests.push({
        method,
        path,
        query: u.search,
        status,
        ...(nonce ? { leaseNonce: nonce } : {}),
        ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      });
      if (!res.headersSent) {
        res.writeHead(status, headers);
        res.end(JSON.stringify(out));
      }
    })();
  });

  /** Finds the machine a public request goes to, waking it when its service allows autostart. */
  async function edgeTarget(req: IncomingMessage): Promise<FakeMachine> {
    const forced = req.headers['fly-force-instance-id'];
    const candidates = [...machines.values()].filter(
      (m) => m.state !== 'destroyed' && m.state !== 'destroying',
    );
    const m =
      typeof forced === 'string' ? machines.get(forced) : candidates.find((c) => c.state === 'started');
    if (!m || m.state === 'destroyed' || m.state === 'destroying')
      throw new HttpError(typeof forced === 'string' ? 404 : 503, 'no machine to route to');
    if (m.state !== 'started') {
      const autostart = m.config.services?.some((s) => s.autostart);
      if (!autostart) throw new HttpError(503, `machine ${m.id} is ${m.state}`);
      if (['stopped', 'suspended', 'created'].includes(m.state)) startMachine(m);
      await new Promise<void>((r) => {
        const check = () => {
          if (m.state === 'started' || m.state === 'destroyed') {
            m.waiters.delete(check);
            r();
          }
        };
        m.waiters.add(check);
        check();
      });
    }
    if (!m.process) throw new HttpError(502, `machine ${m.id} runs nothing that listens`);
    return m;
  }

  const edge: Server = createServer((req, res) => {
    void (async () => {
      try {
        const m = await edgeTarget(req);
        const upstream = httpRequest(
          {
            host: '127.0.0.1',
            port: m.process!.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, 'fly-request-id': randomBytes(8).toString('hex') },
          },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        upstream.on('error', (e) => {
          if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`fly-proxy: ${e.message}`);
        });
        req.pipe(upstream);
      } catch (e) {
        const status = e instanceof HttpError ? e.status : 502;
        res.writeHead(status, { 'content-type': 'text/plain' }).end(`fly-proxy: ${(e as Error).message}`);
      }
    })();
  });
  edge.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    void (async () => {
      try {
        const m = await edgeTarget(req);
        const up = connect(m.process!.port, '127.0.0.1', () => {
          const lines = [`${req.method} ${req.url} HTTP/1.1`];
          for (let i = 0; i < req.rawHeaders.length; i += 2)
            lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
          up.write(`${lines.join('\r\n')}\r\n\r\n`);
          if (head.length) up.write(head);
          up.pipe(socket);
          socket.pipe(up);
        });
        up.on('error', () => socket.destroy());
        socket.on('error', () => up.destroy());
      } catch (e) {
        const status = e instanceof HttpError ? e.status : 502;
        socket.end(`HTTP/1.1 ${status} Proxy Error\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      }
    })();
  });

  const listen = (s: Server) =>
    new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));
  const [apiPort, edgePort] = await Promise.all([listen(api), listen(edge)]);

  return {
    url: `http://127.0.0.1:${apiPort}/v1`,
    edgeUrl: `http://127.0.0.1:${edgePort}`,
    app,
    token,
    regions,
    requests,
    validationErrors,
    validator,
    injectFault(f) {
      faults.push({ ...f, left: f.count ?? 1 });
    },
    setRegionCapacity(region, has) {
      if (has) noCapacity.delete(region);
      else noCapacity.add(region);
    },
    machine(id) {
      const m = machines.get(id);
      return m ? { ...view(m), ...(m.process ? { processPort: m.process.port } : {}) } : undefined;
    },
    machines: () => [...machines.values()].map(view),
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      for (const m of machines.values()) for (const w of m.waiters) w();
      await Promise.allSettled([...machines.values()].map((m) => stopProcess(m)));
      api.closeAllConnections();
      edge.closeAllConnections();
      await Promise.all([new Promise((r) => api.close(r)), new Promise((r) => edge.close(r))]);
    },
  };
}
