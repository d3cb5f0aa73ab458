import { randomBytes } from 'node:crypto';
import type { TemplateName } from '@preview/tiers';
import type { Logger } from 'pino';
import { waitReady } from './daemon-client.ts';
import type { ContainerRuntime, SandboxInfo } from './runtime/types.ts';

export interface WarmPoolOptions {
  runtime: ContainerRuntime;
  /** Target number of ready warm sandboxes per template. */
  targets: Partial<Record<TemplateName, number>>;
  /** Sandboxes this node may run in total (warm + starting + claimed). */
  slots: number;
  /** How many sandboxes are claimed (serving a preview) right now. */
  claimed: () => number;
  readyTimeoutMs: number;
  /** Environment every warm sandbox gets (nothing preview-specific). */
  env?: Record<string, string>;
  log?: Logger;
}

export const newDaemonToken = (): string => randomBytes(24).toString('base64url');

/**
 * Per-template warm pools: sandboxes already running the daemon and the template's dev server with
 * its dependencies installed, so a claim only sends the user's files.
 * `populate` fills every pool to its target in the background; `acquire` takes a ready sandbox and
 * starts a refill; `release` gives an unused one back; `drain` removes them all. Never exceeds `slots`.
 *
 * @example
 * const pools = new WarmPools({ runtime, targets: { 'vite-react': 2 }, slots: 20, claimed: () => 0, readyTimeoutMs: 60_000 });
 * pools.populate();
 * const box = pools.acquire('vite-react'); // undefined when empty: take the cold path
 */
export class WarmPools {
  #o: WarmPoolOptions;
  #ready = new Map<TemplateName, SandboxInfo[]>();
  #starting = new Map<TemplateName, number>();
  #draining = false;
  #filling = new Set<Promise<void>>();

  constructor(options: WarmPoolOptions) {
    this.#o = options;
  }

  /** Ready warm sandboxes per template. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [t, list] of this.#ready) out[t] = list.length;
    return out;
  }

  /** Sandboxes this pool holds (ready or starting). */
  size(): number {
    let n = 0;
    for (const l of this.#ready.values()) n += l.length;
    for (const s of this.#starting.values()) n += s;
    return n;
  }

  /** Slots not taken by claimed or pooled sandboxes. */
  free(): number {
    return Math.max(0, this.#o.slots - this.#o.claimed() - this.size());
  }

  /** Starts filling every pool toward its target; resolves when the current round of starts settles. */
  populate(): Promise<void> {
    if (this.#draining) return Promise.resolve();
    const starts: Promise<void>[] = [];
    for (const [template, target] of Object.entries(this.#o.targets) as [TemplateName, number][]) {
      const have = (this.#ready.get(template)?.length ?? 0) + (this.#starting.get(template) ?? 0);
      for (let i = have; i < target; i++) {
        if (this.free() <= 0) break;
        starts.push(this.#startOne(template));
      }
    }
    return Promise.all(starts).then(() => {});
  }

  /** Waits until every pool start in flight has settled (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.#filling.size) await Promise.all([...this.#filling]);
  }

  #startOne(template: TemplateName): Promise<void> {
    this.#starting.set(template, (this.#starting.get(template) ?? 0) + 1);
    const p = (async () => {
      let box: SandboxInfo | undefined;
      try {
        box = await this.#o.runtime.create({
          template,
          pool: template,
          daemonToken: newDaemonToken(),
          ...(this.#o.env ? { env: this.#o.env } : {}),
        });
        const id = box.id;
        await waitReady(box.upstream, {
          timeoutMs: this.#o.readyTimeoutMs,
          intervalMs: 50,
          isDead: () => undefined,
        });
        if (this.#draining) throw new Error('pool drained while starting');
        const list = this.#ready.get(template) ?? [];
        list.push(box);
        this.#ready.set(template, list);
        this.#o.log?.debug({ template, id }, 'warm sandbox ready');
      } catch (e) {
        if (!this.#draining) this.#o.log?.warn({ err: e, template }, 'warm sandbox failed to start');
        if (box) await this.#o.runtime.remove(box.id).catch(() => {});
      } finally {
        this.#starting.set(template, (this.#starting.get(template) ?? 1) - 1);
      }
    })();
    this.#filling.add(p);
    void p.finally(() => this.#filling.delete(p));
    return p;
  }

  /** Takes a ready warm sandbox of `template` (or `undefined`) and refills in the background. */
  acquire(template: TemplateName): SandboxInfo | undefined {
    const box = this.#ready.get(template)?.shift();
    // The caller now counts this one as claimed; refill after it does.
    queueMicrotask(() => void this.populate());
    return box;
  }

  /** Gives back a sandbox that was acquired but never received user files. */
  release(box: SandboxInfo): void {
    if (this.#draining) {
      void this.#o.runtime.remove(box.id).catch(() => {});
      return;
    }
    const list = this.#ready.get(box.template) ?? [];
    list.unshift(box);
    this.#ready.set(box.template, list);
  }

  /** Removes a sandbox from the pool if it is there (it died). */
  forget(id: string): boolean {
    for (const list of this.#ready.values()) {
      const i = list.findIndex((b) => b.id === id);
      if (i >= 0) {
        list.splice(i, 1);
        return true;
      }
    }
    return false;
  }

  /** Adopts an existing, unclaimed sandbox (found at start) into its pool. */
  adopt(box: SandboxInfo): void {
    const list = this.#ready.get(box.template) ?? [];
    list.push(box);
    this.#ready.set(box.template, list);
  }

  /** Stops refilling and removes every warm sandbox. */
  async drain(): Promise<void> {
    this.#draining = true;
    await this.settled();
    const all = [...this.#ready.values()].flat();
    this.#ready.clear();
    await Promise.all(all.map((b) => this.#o.runtime.remove(b.id).catch(() => false)));
  }
}
