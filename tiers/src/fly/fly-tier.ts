import { createHmac } from 'node:crypto';
import { Cleanup } from '../cleanup.ts';
import { DaemonLink, openDaemonSync } from '../daemon-sync/index.ts';
import {
  CapacityError,
  ConfigError,
  InvalidInputError,
  NotFoundError,
  PreviewError,
  TierUnavailableError,
  TimeoutError,
} from '../errors.ts';
import type {
  CallOptions,
  Placement,
  PreviewSpec,
  SyncChannel,
  Tier,
  TierCapacity,
  TierSandbox,
  TierStatus,
} from '../types.ts';
import { type Ack, DAEMON_PORT, FileBatch, type PreviewPhase } from '../wire.ts';
import {
  type FlyClientOptions,
  type FlyMachine,
  type FlyMachineConfig,
  FlyMachinesClient,
} from './machines-client.ts';
import { sleep } from './retry.ts';
import { PreviewId, parsePreviewSpec } from './spec.ts';

/**
 * The `fly` tier: one Fly Machine per preview, created through the Machines API, running the
 * preview-daemon. Edits reach the daemon's `/__preview/sync` through Fly's edge
 * (`wss://<app>.fly.dev`) with `fly-force-instance-id: <machineId>`; the router's preview proxy
 * forwards to `placement.upstream` with the same header (`placement.instanceId`).
 *
 * @example
 * const fly = createFlyTier({
 *   client: { token: config.FLY_API_TOKEN, app: config.FLY_APP },
 *   image: 'registry.fly.io/preview-base:2026-11', regions: ['ams', 'fra'],
 *   daemonTokenSecret: config.FLY_DAEMON_TOKEN_SECRET, maxMachines: 50,
 * });
 * const placement = await fly.create(spec, { signal: AbortSignal.timeout(30_000) });
 */
export interface FlyTierOptions {
  /** A client, or the options to build one (`token`, `app`, `baseUrl`, retry settings). */
  client: FlyMachinesClient | FlyClientOptions;
  /** The preview-base image Fly pulls (e.g. `registry.fly.io/<app>:<tag>`). */
  image: string;
  /** Regions to try in order; the next is used when one answers `insufficient_capacity`. */
  regions: string[];
  /** Secret from which each preview's daemon token is derived (HMAC-SHA256 of the preview id). */
  daemonTokenSecret: string;
  /** Most machines this tier keeps at once (its capacity). */
  maxMachines: number;
  /** The app's public URL. Default `https://<app>.fly.dev`. */
  appUrl?: string;
  /** The daemon's port inside the machine (default {@link DAEMON_PORT}). */
  daemonPort?: number;
  guest?: { cpu_kind?: 'shared' | 'performance'; cpus?: number; memory_mb?: number };
  /** How long `create`/`resume` wait for the machine to start (default 60 s). */
  startTimeoutMs?: number;
  /** How long they then wait for the dev server to answer (default 120 s). 0 = don't wait for ready. */
  readyTimeoutMs?: number;
  /** How often the daemon's health route is polled (default 150 ms). */
  pollMs?: number;
  /**
   * Largest project (decoded bytes) written into the machine at boot through Fly's `config.files`
   * (default 2 MiB). A larger project is refused with `TierUnavailableError` so placement moves on.
   */
  maxInlineFilesBytes?: number;
  fetch?: typeof fetch;
}

interface Known {
  machineId: string;
  region: string;
}

const PROJECT_DIR = '/project';
const LIVE = new Set([
  'created',
  'starting',
  'started',
  'stopping',
  'stopped',
  'suspending',
  'suspended',
  'replacing',
]);

export function createFlyTier(options: FlyTierOptions): Tier & { readonly client: FlyMachinesClient } {
  for (const k of ['image', 'daemonTokenSecret'] as const)
    if (typeof options[k] !== 'string' || options[k].length === 0)
      throw new ConfigError('invalid_config', `createFlyTier: option "${k}" is required`);
  if (!Array.isArray(options.regions) || options.regions.length === 0)
    throw new ConfigError('invalid_config', 'createFlyTier: option "regions" must list at least one region');
  if (!Number.isInteger(options.maxMachines) || options.maxMachines < 0)
    throw new ConfigError(
      'invalid_config',
      'createFlyTier: option "maxMachines" must be a non-negative integer',
    );
  if (options.daemonTokenSecret.length < 16)
    throw new ConfigError(
      'invalid_config',
      'createFlyTier: option "daemonTokenSecret" must be at least 16 characters',
    );

  const client =
    options.client instanceof FlyMachinesClient ? options.client : new FlyMachinesClient(options.client);
  const appUrl = (options.appUrl ?? `https://${client.app}.fly.dev`).replace(/\/+$/, '');
  const wsUrl = `${appUrl.replace(/^http/, 'ws')}/__preview/sync`;
  const daemonPort = options.daemonPort ?? DAEMON_PORT;
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
  const pollMs = options.pollMs ?? 150;
  const doFetch = options.fetch ?? fetch;
  const maxInlineFilesBytes = options.maxInlineFilesBytes ?? 2 * 1024 * 1024;
  const known = new Map<string, Known>();
  const channels = new Set<SyncChannel>();
  const links = new Map<string, { machineId: string; link: DaemonLink }>();
  let closed = false;

  const tokenFor = (previewId: string) =>
    createHmac('sha256', options.daemonTokenSecret).update(`fly-daemon:${previewId}`).digest('base64url');
  const edgeHeaders = (machineId: string) => ({ 'fly-force-instance-id': machineId });
  const checkOpen = () => {
    if (closed) throw new PreviewError('tier_closed', 'the fly tier is closed');
  };
  const checkId = (previewId: string) => {
    const r = PreviewId.safeParse(previewId);
    if (!r.success)
      throw new InvalidInputError('invalid_preview_id', `previewId: ${r.error.issues[0]?.message}`);
  };

  /** The preview's live machine, from memory or from Fly (metadata `preview_id`). */
  async function lookup(
    previewId: string,
    signal?: AbortSignal,
  ): Promise<(Known & { machine: FlyMachine }) | undefined> {
    const k = known.get(previewId);
    if (k) {
      const m = await client.getMachine(k.machineId, { signal });
      if (m && LIVE.has(m.state)) return Object.assign(k, { machine: m });
      forget(previewId);
      return undefined;
    }
    const list = await client.listMachines({ metadata: { preview_id: previewId } }, { signal });
    const m = list.find((x) => LIVE.has(x.state));
    if (!m) return undefined;
    const entry: Known = { machineId: m.id, region: m.region };
    known.set(previewId, entry);
    return Object.assign(entry, { machine: m });
  }
  function forget(previewId: string) {
    const k = known.get(previewId);
    known.delete(previewId);
    if (k) closeLink(previewId);
  }

  async function health(
    machineId: string,
    signal?: AbortSignal,
  ): Promise<{ status: number; phase?: string; message?: string } | undefined> {
    try {
      const t = AbortSignal.timeout(5_000);
      const res = await doFetch(`${appUrl}/__preview/health`, {
        headers: edgeHeaders(machineId),
        signal: signal ? AbortSignal.any([signal, t]) : t,
      });
      const body = (await res.json().catch(() => ({}))) as { phase?: string; message?: string };
      // The edge answers for itself (no daemon behind it yet) without the daemon's JSON.
      if (body.phase === undefined && res.status !== 200) return undefined;
      return { status: res.status, phase: body.phase, message: body.message };
    } catch {
      if (signal?.aborted) throw signal.reason;
      return undefined;
    }
  }

  async function waitDaemon(machineId: string, ready: boolean, timeoutMs: number, signal?: AbortSignal) {
    const deadline = Date.now() + timeoutMs;
    let last: { status: number; phase?: string; message?: string } | undefined;
    while (Date.now() < deadline) {
      last = await health(machineId, signal);
      if (last && (!ready || last.status === 200)) return;
      if (last?.phase === 'error' && ready)
        throw new PreviewError(
          'preview_error',
          `the preview's dev server failed on machine ${machineId}: ${last.message ?? 'no message'}`,
        );
      await sleep(pollMs, signal);
    }
    throw new TimeoutError(
      'timeout',
      `machine ${machineId}: daemon not ${ready ? 'ready' : 'listening'} after ${timeoutMs} ms (last: ${JSON.stringify(last)})`,
    );
  }

  /** The `apply` connection to a preview's daemon (one per preview, reopened on use after a drop). */
  function linkFor(previewId: string, k: Known): DaemonLink {
    const held = links.get(previewId);
    if (held?.machineId === k.machineId) return held.link;
    held?.link.close();
    const link = new DaemonLink({
      url: wsUrl,
      token: tokenFor(previewId),
      headers: edgeHeaders(k.machineId),
      tier: 'fly',
    });
    links.set(previewId, { machineId: k.machineId, link });
    return link;
  }
  function closeLink(previewId: string): void {
    links.get(previewId)?.link.close();
    links.delete(previewId);
  }

  /**
   * The project goes into the machine at boot as Fly `files` (base64, under /project), not over the
   * sync socket: the daemon treats every seq it has seen as a replay, so an initial load sent as
   * batches would use up sequence numbers that belong to the editor's edits.
   */
  function projectFiles(files: PreviewSpec['files']): NonNullable<FlyMachineConfig['files']> {
    const out: NonNullable<FlyMachineConfig['files']> = [];
    let bytes = 0;
    for (const [path, v] of Object.entries(files)) {
      const buf =
        typeof v === 'string' || v.encoding === 'utf8'
          ? Buffer.from(typeof v === 'string' ? v : v.content, 'utf8')
          : Buffer.from(v.content, 'base64');
      bytes += buf.length;
      out.push({ guest_path: `${PROJECT_DIR}/${path}`, raw_value: buf.toString('base64') });
    }
    if (bytes > maxInlineFilesBytes)
      throw new TierUnavailableError(
        'fly_project_too_large',
        `project is ${bytes} bytes; the fly tier writes at most ${maxInlineFilesBytes} bytes into a new machine`,
        { tier: 'fly' },
      );
    return out;
  }

  function machineConfig(spec: PreviewSpec): FlyMachineConfig {
    const files = projectFiles(spec.files);
    return {
      image: options.image,
      ...(files.length ? { files } : {}),
      env: {
        ...spec.env,
        PREVIEW_TEMPLATE: spec.template,
        PREVIEW_DAEMON_TOKEN: tokenFor(spec.previewId),
        PREVIEW_DAEMON_PORT: String(daemonPort),
        PREVIEW_PROJECT_DIR: PROJECT_DIR,
      },
      metadata: {
        preview_id: spec.previewId,
        user_id: spec.userId,
        template: spec.template,
        managed_by: 'preview-router',
      },
      guest: { cpu_kind: 'shared', cpus: 1, memory_mb: 1024, ...options.guest },
      services: [
        {
          protocol: 'tcp',
          internal_port: daemonPort,
          // The edge wakes a suspended preview on its next request; the router's idle job suspends it.
          autostart: true,
          autostop: false,
          ports: [
            { port: 443, handlers: ['tls', 'http'] },
            { port: 80, handlers: ['http'], force_https: true },
          ],
          checks: [
            {
              type: 'http',
              port: daemonPort,
              method: 'GET',
              path: '/__preview/health',
              interval: '15s',
              timeout: '5s',
              grace_period: '30s',
            },
          ],
        },
      ],
      // A crashed daemon restarts twice; after that the machine is gone and reconciliation re-places it.
      restart: { policy: 'on-failure', max_retries: 2 },
      auto_destroy: true,
      stop_config: { signal: 'SIGTERM', timeout: '10s' },
    };
  }

  const placementOf = (previewId: string, m: FlyMachine): Placement => ({
    tier: 'fly',
    previewId,
    machineId: m.id,
    region: m.region,
    upstream: appUrl,
    instanceId: m.id,
  });

  async function ensureRunning(previewId: string, k: Known & { machine: FlyMachine }, signal?: AbortSignal) {
    if (k.machine.state !== 'started') {
      if (['stopped', 'suspended', 'created'].includes(k.machine.state))
        await client.withLease(
          k.machineId,
          (nonce) => client.startMachine(k.machineId, { signal, leaseNonce: nonce }),
          {
            signal,
          },
        );
      await client.waitForState(k.machineId, 'started', { signal, timeoutMs: startTimeoutMs });
    }
    await waitDaemon(k.machineId, false, startTimeoutMs, signal);
    if (readyTimeoutMs > 0) await waitDaemon(k.machineId, true, readyTimeoutMs, signal);
    void previewId;
  }

  const tier: Tier & { readonly client: FlyMachinesClient } = {
    name: 'fly',
    client,

    async create(rawSpec, o: CallOptions = {}) {
      checkOpen();
      const spec = parsePreviewSpec(rawSpec);
      const signal = o.signal;
      const existing = await lookup(spec.previewId, signal);
      if (existing) {
        await ensureRunning(spec.previewId, existing, signal);
        return placementOf(spec.previewId, existing.machine);
      }
      const cap = await tier.capacity({ signal });
      if (cap.available <= 0)
        throw new CapacityError('fly_at_limit', `fly tier is at its limit of ${cap.total} machines`);

      const undo = new Cleanup();
      try {
        const m = await client.createMachine(
          { config: machineConfig(spec), regions: options.regions, adoptKey: 'preview_id' },
          { signal },
        );
        undo.add(() => client.destroyMachine(m.id));
        const k: Known = { machineId: m.id, region: m.region };
        known.set(spec.previewId, k);
        undo.add(() => forget(spec.previewId));
        await client.waitForState(m.id, 'started', {
          signal,
          instanceId: m.instance_id,
          timeoutMs: startTimeoutMs,
        });
        await waitDaemon(m.id, false, startTimeoutMs, signal);
        if (readyTimeoutMs > 0) await waitDaemon(m.id, true, readyTimeoutMs, signal);
        return placementOf(spec.previewId, m);
      } catch (e) {
        await undo.run().catch(() => {});
        throw e;
      }
    },

    async apply(previewId, batch, o: CallOptions = {}): Promise<Ack> {
      checkOpen();
      checkId(previewId);
      const parsed = FileBatch.safeParse(batch);
      if (!parsed.success)
        throw new InvalidInputError(
          parsed.error.issues.some(
            (i) => i.path.includes('path') || i.path.includes('from') || i.path.includes('to'),
          )
            ? 'invalid_path'
            : 'invalid_batch',
          parsed.error.issues
            .slice(0, 5)
            .map((i) => `batch.${i.path.map(String).join('.')}: ${i.message}`)
            .join('; '),
        );
      const k = known.get(previewId) ?? (await lookup(previewId, o.signal));
      if (!k) throw new NotFoundError('not_found', `no fly machine for preview ${previewId}`);
      return await linkFor(previewId, k).send(parsed.data, {
        timeoutMs: 60_000,
        ...(o.signal ? { signal: o.signal } : {}),
      });
    },

    async openSync(previewId, o: CallOptions = {}) {
      checkOpen();
      checkId(previewId);
      const k = await lookup(previewId, o.signal);
      if (!k) throw new NotFoundError('not_found', `no fly machine for preview ${previewId}`);
      const ch = await openDaemonSync({
        url: wsUrl,
        token: tokenFor(previewId),
        headers: edgeHeaders(k.machineId),
        signal: o.signal,
      });
      channels.add(ch);
      ch.onClose(() => channels.delete(ch));
      return ch;
    },

    async suspend(previewId, o: CallOptions = {}) {
      checkOpen();
      checkId(previewId);
      const k = await lookup(previewId, o.signal);
      if (!k) throw new NotFoundError('not_found', `no fly machine for preview ${previewId}`);
      if (k.machine.state === 'suspended' || k.machine.state === 'suspending') {
        await client.waitForState(k.machineId, 'suspended', { signal: o.signal, timeoutMs: startTimeoutMs });
        return;
      }
      closeLink(previewId);
      await client.withLease(
        k.machineId,
        (nonce) => client.suspendMachine(k.machineId, { signal: o.signal, leaseNonce: nonce }),
        {
          signal: o.signal,
        },
      );
      await client.waitForState(k.machineId, 'suspended', { signal: o.signal, timeoutMs: startTimeoutMs });
    },

    async resume(previewId, o: CallOptions = {}) {
      checkOpen();
      checkId(previewId);
      const k = await lookup(previewId, o.signal);
      if (!k) throw new NotFoundError('not_found', `no fly machine for preview ${previewId}`);
      await ensureRunning(previewId, k, o.signal);
    },

    async destroy(previewId, o: CallOptions = {}) {
      checkOpen();
      if (!PreviewId.safeParse(previewId).success) return false;
      const k = await lookup(previewId, o.signal);
      if (!k) return false;
      forget(previewId);
      if (k.machine.state === 'destroying' || k.machine.state === 'destroyed') return false;
      return await client.destroyMachine(k.machineId, { signal: o.signal, force: true });
    },

    async status(previewId, o: CallOptions = {}): Promise<TierStatus | undefined> {
      checkOpen();
      if (!PreviewId.safeParse(previewId).success) return undefined;
      const k = await lookup(previewId, o.signal);
      if (!k) return undefined;
      const state = k.machine.state;
      if (['suspended', 'suspending', 'stopped', 'stopping'].includes(state))
        return { phase: 'suspended', message: `machine ${state}` };
      if (state !== 'started') return { phase: 'starting', message: `machine ${state}` };
      try {
        const t = AbortSignal.timeout(5_000);
        const res = await doFetch(`${appUrl}/__preview/status`, {
          headers: { ...edgeHeaders(k.machineId), authorization: `Bearer ${tokenFor(previewId)}` },
          signal: o.signal ? AbortSignal.any([o.signal, t]) : t,
        });
        if (!res.ok) return { phase: 'starting', message: `daemon answered ${res.status}` };
        const body = (await res.json()) as { phase?: PreviewPhase; message?: string; log?: string[] };
        const phase: PreviewPhase = ['installing', 'starting', 'ready', 'error'].includes(body.phase ?? '')
          ? (body.phase as PreviewPhase)
          : 'starting';
        return {
          phase,
          ...(body.message ? { message: body.message } : {}),
          ...(Array.isArray(body.log) ? { log: body.log.slice(-200) } : {}),
        };
      } catch {
        if (o.signal?.aborted) throw o.signal.reason;
        return { phase: 'starting', message: 'daemon not reachable yet' };
      }
    },

    async capacity(o: CallOptions = {}): Promise<TierCapacity> {
      checkOpen();
      const mine = await client.listMachines(
        { metadata: { managed_by: 'preview-router' } },
        { signal: o.signal },
      );
      const used = mine.filter((m) => LIVE.has(m.state)).length;
      return { total: options.maxMachines, available: Math.max(0, options.maxMachines - used) };
    },

    async sandboxes(o: CallOptions = {}): Promise<TierSandbox[]> {
      checkOpen();
      const mine = await client.listMachines(
        { metadata: { managed_by: 'preview-router' } },
        { signal: o.signal },
      );
      const out: TierSandbox[] = [];
      for (const m of mine) {
        const previewId = m.config?.metadata?.['preview_id'];
        if (!previewId || !LIVE.has(m.state)) continue;
        const createdAt = m.created_at ? Date.parse(m.created_at) : Number.NaN;
        out.push(Number.isFinite(createdAt) ? { previewId, createdAt } : { previewId });
      }
      return out;
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const c of channels) c.close();
      channels.clear();
      for (const id of [...known.keys()]) forget(id);
      for (const id of [...links.keys()]) closeLink(id);
    },
  };
  return tier;
}
