import {
  CapacityError,
  ConfigError,
  ConflictError,
  InvalidInputError,
  NotFoundError,
  PreviewError,
} from '../errors.ts';
import type { CallOptions, Placement, Tier, TierCapacity, TierSandbox, TierStatus } from '../types.ts';
import { type Ack, DAEMON_PORT } from '../wire.ts';
import { FlyEdge } from './fly-edge.ts';
import { liveCount, sandboxesOf, statusOfMachine } from './fly-status.ts';
import { FlySync, parseBatch } from './fly-sync.ts';
import { flyMachineConfig } from './machine-config.ts';
import { FlyMachineLifecycle } from './machine-lifecycle.ts';
import { type FlyClientOptions, type FlyMachine, FlyMachinesClient } from './machines-client.ts';
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

/**
 * Checks the options `createFlyTier` cannot work without.
 * @throws ConfigError `invalid_config` naming the option: `image` or `daemonTokenSecret` missing,
 * `regions` empty, `maxMachines` not a non-negative integer, `daemonTokenSecret` under 16 characters.
 */
export function checkFlyTierOptions(options: FlyTierOptions): void {
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
}

/**
 * Builds the fly tier from its parts: the daemon behind Fly's edge (`fly-edge.ts`), the machines'
 * lifecycle (`machine-lifecycle.ts`), the sync links (`fly-sync.ts`) and status (`fly-status.ts`).
 * @throws ConfigError `invalid_config` (see {@link checkFlyTierOptions}).
 */
export function createFlyTier(options: FlyTierOptions): Tier & { readonly client: FlyMachinesClient } {
  checkFlyTierOptions(options);
  const client =
    options.client instanceof FlyMachinesClient ? options.client : new FlyMachinesClient(options.client);
  const edge = new FlyEdge({
    appUrl: (options.appUrl ?? `https://${client.app}.fly.dev`).replace(/\/+$/, ''),
    daemonTokenSecret: options.daemonTokenSecret,
    pollMs: options.pollMs ?? 150,
    fetch: options.fetch ?? fetch,
  });
  const daemonPort = options.daemonPort ?? DAEMON_PORT;
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const maxInlineFilesBytes = options.maxInlineFilesBytes ?? 2 * 1024 * 1024;
  const sync = new FlySync(edge);
  const machines = new FlyMachineLifecycle({
    client,
    edge,
    startTimeoutMs,
    readyTimeoutMs: options.readyTimeoutMs ?? 120_000,
    onForget: (previewId) => sync.closeLink(previewId),
  });
  let closed = false;

  const checkOpen = () => {
    if (closed) throw new PreviewError('tier_closed', 'the fly tier is closed');
  };
  const checkId = (previewId: string) => {
    const r = PreviewId.safeParse(previewId);
    if (!r.success)
      throw new InvalidInputError('invalid_preview_id', `previewId: ${r.error.issues[0]?.message}`);
  };
  const mustFind = async (previewId: string, signal?: AbortSignal) => {
    const k = await machines.lookup(previewId, signal);
    if (!k) throw new NotFoundError('not_found', `no fly machine for preview ${previewId}`);
    return k;
  };
  const placementOf = (previewId: string, m: FlyMachine): Placement => ({
    tier: 'fly',
    previewId,
    machineId: m.id,
    region: m.region,
    upstream: edge.appUrl,
    instanceId: m.id,
  });
  const managed = (signal?: AbortSignal) =>
    client.listMachines({ metadata: { managed_by: 'preview-router' } }, { signal });

  const tier: Tier & { readonly client: FlyMachinesClient } = {
    name: 'fly',
    client,

    async create(rawSpec, o: CallOptions = {}) {
      checkOpen();
      const spec = parsePreviewSpec(rawSpec);
      const existing = await machines.lookup(spec.previewId, o.signal);
      if (existing) {
        await machines.ensureRunning(existing, o.signal);
        return placementOf(spec.previewId, existing.machine);
      }
      const cap = await tier.capacity({ signal: o.signal });
      if (cap.available <= 0)
        throw new CapacityError('fly_at_limit', `fly tier is at its limit of ${cap.total} machines`);
      const config = flyMachineConfig(spec, {
        image: options.image,
        daemonPort,
        daemonToken: edge.tokenFor(spec.previewId),
        maxInlineFilesBytes,
        guest: options.guest,
      });
      const m = await machines.launch(spec.previewId, { config, regions: options.regions }, o.signal);
      return placementOf(spec.previewId, m);
    },

    async apply(previewId, batch, o: CallOptions = {}): Promise<Ack> {
      checkOpen();
      checkId(previewId);
      const parsed = parseBatch(batch);
      const k = machines.cached(previewId) ?? (await mustFind(previewId, o.signal));
      return await sync.apply(previewId, k.machineId, parsed, o.signal);
    },

    async openSync(previewId, o: CallOptions = {}) {
      checkOpen();
      checkId(previewId);
      const k = await mustFind(previewId, o.signal);
      return await sync.openSync(previewId, k.machineId, o.signal);
    },

    async suspend(previewId, o: CallOptions = {}) {
      checkOpen();
      checkId(previewId);
      const k = await mustFind(previewId, o.signal);
      await machines.suspend(k, () => sync.closeLink(previewId), o.signal);
    },

    async resume(previewId, o: CallOptions = {}) {
      checkOpen();
      checkId(previewId);
      await machines.ensureRunning(await mustFind(previewId, o.signal), o.signal);
    },

    async destroy(previewId, o: CallOptions = {}) {
      checkOpen();
      if (!PreviewId.safeParse(previewId).success) return false;
      return await machines.destroy(previewId, o.signal);
    },

    async status(previewId, o: CallOptions = {}): Promise<TierStatus | undefined> {
      checkOpen();
      if (!PreviewId.safeParse(previewId).success) return undefined;
      const k = await machines.lookup(previewId, o.signal);
      if (!k) return undefined;
      return statusOfMachine(k.machine.state) ?? (await edge.daemonStatus(previewId, k.machineId, o.signal));
    },

    async runScript(previewId, name, o: CallOptions = {}) {
      checkOpen();
      const k = PreviewId.safeParse(previewId).success
        ? await machines.lookup(previewId, o.signal)
        : undefined;
      if (!k) throw new NotFoundError('preview_not_found', `no fly preview ${previewId}`);
      if (k.machine.state !== 'started')
        throw new ConflictError(
          'preview_not_running',
          `preview ${previewId}'s machine is ${k.machine.state}`,
        );
      return await edge.runScript(previewId, k.machineId, name, o.signal);
    },

    async capacity(o: CallOptions = {}): Promise<TierCapacity> {
      checkOpen();
      const used = liveCount(await managed(o.signal));
      return { total: options.maxMachines, available: Math.max(0, options.maxMachines - used) };
    },

    async sandboxes(o: CallOptions = {}): Promise<TierSandbox[]> {
      checkOpen();
      return sandboxesOf(await managed(o.signal));
    },

    async close() {
      if (closed) return;
      closed = true;
      sync.close();
      for (const id of machines.previewIds()) machines.forget(id);
    },
  };
  return tier;
}
