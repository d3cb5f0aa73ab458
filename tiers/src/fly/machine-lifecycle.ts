import { Cleanup } from '../cleanup.ts';
import type { FlyEdge } from './fly-edge.ts';
import type { FlyMachine, FlyMachineConfig, FlyMachinesClient } from './machines-client.ts';

/** Machine states in which a preview's machine still exists (the rest: destroying, destroyed). */
export const LIVE = new Set([
  'created',
  'starting',
  'started',
  'stopping',
  'stopped',
  'suspending',
  'suspended',
  'replacing',
]);

/** A preview's machine as the tier remembers it. */
export interface KnownMachine {
  machineId: string;
  region: string;
}

/** A known machine with what Fly last said about it. */
export type LiveMachine = KnownMachine & { machine: FlyMachine };

/** What {@link FlyMachineLifecycle} needs. */
export interface MachineLifecycleContext {
  client: Pick<
    FlyMachinesClient,
    | 'getMachine'
    | 'listMachines'
    | 'createMachine'
    | 'destroyMachine'
    | 'startMachine'
    | 'suspendMachine'
    | 'withLease'
    | 'waitForState'
  >;
  edge: Pick<FlyEdge, 'waitDaemon'>;
  /** How long to wait for a machine to start (and its daemon to listen), ms. */
  startTimeoutMs: number;
  /** How long to then wait for the dev server, ms; 0 = don't wait. */
  readyTimeoutMs: number;
  /** Called when the tier forgets a preview's machine (its sync link is closed). */
  onForget: (previewId: string) => void;
}

/**
 * The machines of the tier's previews: which machine is a preview's (remembered, else found on Fly by
 * metadata `preview_id`), and launching, starting, suspending and destroying them.
 */
export class FlyMachineLifecycle {
  readonly #known = new Map<string, KnownMachine>();
  readonly #ctx: MachineLifecycleContext;

  constructor(ctx: MachineLifecycleContext) {
    this.#ctx = ctx;
  }

  /** The remembered machine of a preview, without asking Fly. */
  cached(previewId: string): KnownMachine | undefined {
    return this.#known.get(previewId);
  }

  /** The previews whose machines are remembered. */
  previewIds(): string[] {
    return [...this.#known.keys()];
  }

  /** The preview's live machine, from memory or from Fly (metadata `preview_id`). */
  async lookup(previewId: string, signal?: AbortSignal): Promise<LiveMachine | undefined> {
    const { client } = this.#ctx;
    const k = this.#known.get(previewId);
    if (k) {
      const m = await client.getMachine(k.machineId, { signal });
      if (m && LIVE.has(m.state)) return Object.assign(k, { machine: m });
      this.forget(previewId);
      return undefined;
    }
    const list = await client.listMachines({ metadata: { preview_id: previewId } }, { signal });
    const m = list.find((x) => LIVE.has(x.state));
    if (!m) return undefined;
    const entry: KnownMachine = { machineId: m.id, region: m.region };
    this.#known.set(previewId, entry);
    return Object.assign(entry, { machine: m });
  }

  /** Drops the preview's machine from memory (and, if it was known, its link). */
  forget(previewId: string): void {
    const k = this.#known.get(previewId);
    this.#known.delete(previewId);
    if (k) this.#ctx.onForget(previewId);
  }

  /**
   * Creates the preview's machine in the first region with room, waits for it to start, its daemon
   * to listen and (unless `readyTimeoutMs` is 0) its dev server to be ready. On any failure the
   * machine is destroyed and forgotten before the error is rethrown.
   */
  async launch(
    previewId: string,
    create: { config: FlyMachineConfig; regions: string[] },
    signal?: AbortSignal,
  ): Promise<FlyMachine> {
    const { client, edge, startTimeoutMs, readyTimeoutMs } = this.#ctx;
    const undo = new Cleanup();
    try {
      const m = await client.createMachine({ ...create, adoptKey: 'preview_id' }, { signal });
      undo.add(() => client.destroyMachine(m.id));
      this.#known.set(previewId, { machineId: m.id, region: m.region });
      undo.add(() => this.forget(previewId));
      await client.waitForState(m.id, 'started', {
        signal,
        instanceId: m.instance_id,
        timeoutMs: startTimeoutMs,
      });
      await edge.waitDaemon(m.id, false, startTimeoutMs, signal);
      if (readyTimeoutMs > 0) await edge.waitDaemon(m.id, true, readyTimeoutMs, signal);
      return m;
    } catch (e) {
      await undo.run().catch(() => {});
      throw e;
    }
  }

  /** Starts a stopped, suspended or created machine and waits as {@link launch} does. */
  async ensureRunning(k: LiveMachine, signal?: AbortSignal): Promise<void> {
    const { client, edge, startTimeoutMs, readyTimeoutMs } = this.#ctx;
    if (k.machine.state !== 'started') {
      if (['stopped', 'suspended', 'created'].includes(k.machine.state))
        await client.withLease(
          k.machineId,
          (nonce) => client.startMachine(k.machineId, { signal, leaseNonce: nonce }),
          { signal },
        );
      await client.waitForState(k.machineId, 'started', { signal, timeoutMs: startTimeoutMs });
    }
    await edge.waitDaemon(k.machineId, false, startTimeoutMs, signal);
    if (readyTimeoutMs > 0) await edge.waitDaemon(k.machineId, true, readyTimeoutMs, signal);
  }

  /**
   * Suspends the machine (under a lease) and waits until it is; one already suspending is only waited
   * for. `beforeSuspend` runs only when this call suspends it.
   */
  async suspend(k: LiveMachine, beforeSuspend: () => void, signal?: AbortSignal): Promise<void> {
    const { client, startTimeoutMs } = this.#ctx;
    if (k.machine.state === 'suspended' || k.machine.state === 'suspending') {
      await client.waitForState(k.machineId, 'suspended', { signal, timeoutMs: startTimeoutMs });
      return;
    }
    beforeSuspend();
    await client.withLease(
      k.machineId,
      (nonce) => client.suspendMachine(k.machineId, { signal, leaseNonce: nonce }),
      { signal },
    );
    await client.waitForState(k.machineId, 'suspended', { signal, timeoutMs: startTimeoutMs });
  }

  /** Forgets and force-destroys the preview's machine; `false` when there was none (repeat-safe). */
  async destroy(previewId: string, signal?: AbortSignal): Promise<boolean> {
    const k = await this.lookup(previewId, signal);
    if (!k) return false;
    this.forget(previewId);
    if (k.machine.state === 'destroying' || k.machine.state === 'destroyed') return false;
    return await this.#ctx.client.destroyMachine(k.machineId, { signal, force: true });
  }
}
