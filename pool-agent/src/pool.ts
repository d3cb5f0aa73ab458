import { randomBytes } from 'node:crypto';
import type { TemplateName } from '@preview/tiers';
import type { DaemonLink } from '@preview/tiers/daemon-sync';
import type { Logger } from 'pino';
import { fetchManifest, linkTo, waitReady } from './daemon-client.ts';
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
  /**
   * Whether a template can run yet (its dependencies installed); `populate` skips the others.
   * @default every template can
   */
  runnable?: (template: TemplateName) => boolean;
  /**
   * After a warm sandbox failed to start, the pools are filled again after this long, doubling
   * with each failure in a row up to 60 s. @default 1000
   */
  retryMs?: number;
  /**
   * Most warm sandboxes starting at once on this node; the rest of a refill waits its turn. A start
   * is CPU-bound for about a second (the daemon and the dev server booting), and a refill after a
   * burst of claims that starts them all at once saturates the node: the claimed previews and the
   * agent itself then wait on the run queue. @default 2
   */
  startConcurrency?: number;
  log?: Logger;
}

/** Longest wait before filling the pools again after failed starts, ms. */
const RETRY_MAX_MS = 60_000;

export const newDaemonToken = (): string => randomBytes(24).toString('base64url');

/**
 * A ready warm sandbox with what a claim needs already fetched: the template's manifest (nobody writes
 * to a warm sandbox, so it stays true) and an open sync link to its daemon.
 */
export interface WarmSandbox {
  box: SandboxInfo;
  manifest: Record<string, string> | undefined;
  link: DaemonLink;
}

/**
 * Per-template warm pools: sandboxes already running the daemon and the template's dev server with
 * its dependencies installed, so a claim only sends the user's files.
 * `populate` fills every pool to its target in the background; `acquire` takes a ready sandbox and
 * starts a refill; `release` gives an unused one back; `drain` removes them all. Never exceeds `slots`.
 * A start that fails (the engine refused, the app did not come up in time) is tried again by itself,
 * with a growing delay, so a pool does not stay short until the next claim.
 *
 * @example
 * const pools = new WarmPools({ runtime, targets: { 'vite-react': 2 }, slots: 20, claimed: () => 0, readyTimeoutMs: 60_000 });
 * pools.populate();
 * const box = pools.acquire('vite-react'); // undefined when empty: take the cold path
 */
export class WarmPools {
  #o: WarmPoolOptions;
  #ready = new Map<TemplateName, WarmSandbox[]>();
  #starting = new Map<TemplateName, number>();
  #draining = false;
  #filling = new Set<Promise<void>>();
  /** Failed starts in a row, and the timer of the next fill after them. */
  #failures = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;

  constructor(options: WarmPoolOptions) {
    this.#o = options;
  }

  /** Ready warm sandboxes per template. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [t, list] of this.#ready) out[t] = list.length;
    return out;
  }

  /** The target number of ready warm sandboxes per template (WARM_POOL), a copy. */
  targets(): Record<string, number> {
    return { ...this.#o.targets };
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

  /** Sandboxes starting now, all templates. */
  starting(): number {
    let n = 0;
    for (const s of this.#starting.values()) n += s;
    return n;
  }

  /**
   * Starts filling every pool toward its target, at most `startConcurrency` starts at a time (each
   * start that ends takes the next); resolves when the starts this call made settle. `settled()`
   * waits for the whole refill.
   */
  populate(): Promise<void> {
    if (this.#draining) return Promise.resolve();
    const limit = Math.max(1, this.#o.startConcurrency ?? 2);
    const starts: Promise<void>[] = [];
    // Round-robin over the templates, so a cap of 2 does not fill one pool while another is empty.
    for (let more = true; more; ) {
      more = false;
      for (const [template, target] of Object.entries(this.#o.targets) as [TemplateName, number][]) {
        if (this.starting() >= limit || this.free() <= 0) return Promise.all(starts).then(() => {});
        if (this.#o.runnable && !this.#o.runnable(template)) continue;
        const have = (this.#ready.get(template)?.length ?? 0) + (this.#starting.get(template) ?? 0);
        if (have >= target) continue;
        starts.push(this.#startOne(template));
        more = true;
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
          maxIntervalMs: 500,
          isDead: () => undefined,
        });
        if (this.#draining) throw new Error('pool drained while starting');
        this.#add(await this.#prepare(box));
        this.#failures = 0;
        this.#o.log?.info(
          { template, sandboxId: id, ready: this.#ready.get(template)?.length ?? 0 },
          'warm sandbox ready',
        );
      } catch (e) {
        if (!this.#draining) this.#o.log?.warn({ err: e, template }, 'warm sandbox failed to start');
        if (box) await this.#o.runtime.remove(box.id).catch(() => {});
        this.#failures++;
      } finally {
        this.#starting.set(template, (this.#starting.get(template) ?? 1) - 1);
      }
      if (this.#failures > 0) this.#retryLater();
      // The next start of the refill takes this one's turn (added to #filling before this one leaves it).
      else void this.populate();
    })();
    this.#filling.add(p);
    void p.finally(() => this.#filling.delete(p));
    return p;
  }

  /** Fills the pools again after failed starts: 1 s, 2 s, 4 s … up to a minute (see `retryMs`). */
  #retryLater(): void {
    if (this.#draining || this.#retry) return;
    const first = this.#o.retryMs ?? 1000;
    const delay = Math.min(RETRY_MAX_MS, first * 2 ** Math.min(this.#failures - 1, 16));
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.populate();
    }, delay);
    this.#retry.unref?.();
  }

  async #prepare(box: SandboxInfo): Promise<WarmSandbox> {
    const manifest = await fetchManifest(box.upstream, box.daemonToken).catch(() => undefined);
    const link = linkTo(box);
    await link.connect().catch(() => {});
    return { box, manifest, link };
  }

  #add(w: WarmSandbox, front = false): void {
    const list = this.#ready.get(w.box.template) ?? [];
    if (front) list.unshift(w);
    else list.push(w);
    this.#ready.set(w.box.template, list);
  }

  /** Takes a ready warm sandbox of `template` (or `undefined`) and refills in the background. */
  acquire(template: TemplateName): WarmSandbox | undefined {
    const box = this.#ready.get(template)?.shift();
    // The caller now counts this one as claimed; refill after it does.
    queueMicrotask(() => void this.populate());
    return box;
  }

  /**
   * Like `acquire`, but when no warm sandbox of `template` is ready and one is starting (a refill),
   * waits for the starts in flight to settle and takes the one that became ready. A node whose last
   * free slot holds that starting sandbox has room by its capacity (`used < slots`); without this its
   * claim would find no free slot for a cold start and answer `capacity`.
   * Resolves `undefined` when none of `template` is starting, or every start failed or was taken.
   * @throws the signal's reason when `signal` aborts while waiting.
   */
  async acquireStarting(template: TemplateName, signal?: AbortSignal): Promise<WarmSandbox | undefined> {
    for (;;) {
      if (this.#ready.get(template)?.length) return this.acquire(template);
      if (!(this.#starting.get(template) ?? 0) || this.#filling.size === 0) return undefined;
      signal?.throwIfAborted();
      const aborted = signal
        ? new Promise<never>((_, reject) =>
            signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
          )
        : undefined;
      aborted?.catch(() => {});
      await Promise.race([Promise.race([...this.#filling]), ...(aborted ? [aborted] : [])]);
    }
  }

  /** Gives back a sandbox that was acquired but never received user files. */
  release(w: WarmSandbox): void {
    if (this.#draining) {
      w.link.close();
      void this.#o.runtime.remove(w.box.id).catch(() => {});
      return;
    }
    this.#add(w, true);
  }

  /** Removes a sandbox from the pool if it is there (it died). */
  forget(id: string): boolean {
    for (const list of this.#ready.values()) {
      const i = list.findIndex((w) => w.box.id === id);
      if (i >= 0) {
        list.splice(i, 1)[0]?.link.close();
        return true;
      }
    }
    return false;
  }

  /** Adopts an existing, unclaimed sandbox (found at start) into its pool. */
  async adopt(box: SandboxInfo): Promise<void> {
    this.#add(await this.#prepare(box));
  }

  /** Stops refilling and removes every warm sandbox. */
  async drain(): Promise<void> {
    this.#draining = true;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.settled();
    const all = [...this.#ready.values()].flat();
    this.#ready.clear();
    for (const w of all) w.link.close();
    await Promise.all(all.map((w) => this.#o.runtime.remove(w.box.id).catch(() => false)));
  }
}
