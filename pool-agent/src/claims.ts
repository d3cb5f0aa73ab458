import {
  CapacityError,
  ConflictError,
  InvalidInputError,
  LIMITS,
  PreviewError,
  type ProjectFiles,
  type TemplateName,
} from '@preview/tiers';
import type { Logger } from 'pino';
import { diffOps, fetchManifest, linkTo, type SettledPhase, setAppEnv, waitReady } from './daemon-client.ts';
import { newDaemonToken, type WarmPools, type WarmSandbox } from './pool.ts';
import type { PreviewRecord, PreviewTable } from './previews.ts';
import type { ContainerRuntime, SandboxInfo } from './runtime/types.ts';
import type { ClaimBody, ClaimResult } from './schemas.ts';

/** What a claim needs from the rest of the agent. */
export interface ClaimContext {
  /** This node's name (in capacity errors). */
  node: string;
  /** Previews this node serves at most. */
  slots: number;
  /** How long a claim waits for the dev server's 200, ms. */
  readyTimeoutMs: number;
  runtime: Pick<ContainerRuntime, 'create' | 'assign' | 'remove'>;
  pools: Pick<WarmPools, 'acquire' | 'acquireStarting' | 'free' | 'counts'>;
  table: PreviewTable;
  /** Environment every sandbox gets, warm or cold (nothing preview-specific). */
  sandboxEnv: Record<string, string>;
  /** The app's environment as its sandbox must see it (a database URL through the forwarder). */
  appEnv(env: Record<string, string> | undefined): Promise<Record<string, string> | undefined>;
  /** Removes a preview and its sandbox (a claim that failed half-way). */
  destroy(previewId: string): Promise<boolean>;
  /** This node's id (the router's, once registered) and the base URL of its API. */
  nodeId(): string;
  url(): string;
  /**
   * Throws when `template` cannot run on this node yet (its dependencies still installing, or their
   * install failed); a claim asks before it takes a sandbox. Default: every template can run.
   */
  checkTemplate?(template: TemplateName): void;
  /** Called once a claimed preview is ready. */
  onReady?(p: PreviewRecord): void;
  log: Logger;
}

/**
 * How long each step of a claim took, ms (in its `preview claimed` log line): getting the sandbox
 * (a warm one, or a cold one's engine create and start), a cold daemon's boot until it listens, the
 * user's files (and the warm container's rename), and the wait for `ready` or `installing`.
 */
export interface ClaimSteps {
  sandboxMs: number;
  listeningMs?: number;
  filesMs?: number;
  settledMs?: number;
}

/**
 * Claims: a preview gets a warm sandbox of its template when the pool has one (the environment, then
 * one seq-0 batch of what differs from the template, then the health wait), else a cold one made for
 * it. Repeating a claim for a known id answers the existing preview.
 *
 * @example
 * const claims = new Claims(ctx);
 * const r = await claims.claim({ previewId: 'p1', template: 'vite-react', files }); // { warm: true, ms: 80, ... }
 */
export class Claims {
  readonly #c: ClaimContext;

  constructor(context: ClaimContext) {
    this.#c = context;
  }

  /**
   * @throws ConflictError (the id runs another template), TierUnavailableError (the template is not
   *   installed on this node yet, see `checkTemplate`), CapacityError (no slot), InvalidInputError
   *   (files the daemon refuses), TimeoutError / PreviewError (the sandbox never got ready).
   */
  /** Previews whose claim is in flight (their sandbox may exist before the table holds it). */
  readonly inFlight = new Set<string>();

  async claim(body: ClaimBody, options: { signal?: AbortSignal } = {}): Promise<ClaimResult> {
    this.inFlight.add(body.previewId);
    try {
      return await this.#claim(body, options);
    } finally {
      this.inFlight.delete(body.previewId);
    }
  }

  async #claim(body: ClaimBody, options: { signal?: AbortSignal } = {}): Promise<ClaimResult> {
    const t0 = performance.now();
    const c = this.#c;
    let existing = c.table.find(body.previewId);
    // Its sandbox died (the router re-places the preview, maybe here): a new one replaces it.
    if (existing?.state.kind === 'failed') {
      await c.destroy(body.previewId).catch(() => {});
      existing = undefined;
    }
    if (existing) {
      if (existing.box.template !== body.template)
        throw new ConflictError(
          'conflict',
          `preview ${body.previewId} already runs template ${existing.box.template}`,
        );
      return this.#result(existing, false, t0, existing.state.kind === 'ready' ? 'ready' : 'installing');
    }
    c.checkTemplate?.(body.template);
    if (c.table.size >= c.slots)
      throw new CapacityError('capacity', `node ${c.node} is full (${c.slots} slots)`, {
        retryAfterMs: 5000,
      });
    const env = await c.appEnv(body.env);
    const appEnv = env && Object.keys(env).length > 0 ? env : undefined;
    // No free slot for a cold start but a refill of this template is starting: that one is ours.
    const w =
      c.pools.acquire(body.template) ??
      (c.pools.free() <= 0 ? await c.pools.acquireStarting(body.template, options.signal) : undefined);
    const { box, assigned } = w
      ? await this.#takeWarm(w, body.previewId, appEnv, options.signal)
      : { box: await this.#createCold(body, appEnv, options.signal), assigned: Promise.resolve() };
    // Where a claim's time goes, in its log line (a cold one: the engine's start, the daemon's boot).
    const steps: ClaimSteps = { sandboxMs: Math.round(performance.now() - t0) };
    const p = c.table.add({
      id: body.previewId,
      box,
      link: w?.link ?? linkTo(box),
      state: { kind: 'starting' },
      relays: new Set(),
    });
    try {
      const phase = await this.#load(p, body.files, w, assigned, options.signal, steps);
      if (phase === 'installing') this.#readyLater(p);
      else this.#ready(p);
      c.log.info(
        { previewId: p.id, warm: !!w, phase, ms: Math.round(performance.now() - t0), steps },
        'preview claimed',
      );
      return this.#result(p, !!w, t0, phase);
    } catch (e) {
      // Bad user files are the caller's problem; anything else leaves the sandbox unusable. A daemon
      // that reported the app's error leaves its reason and last output behind for `status`.
      if (e instanceof PreviewError && e.code === 'app_error') c.table.fail(p, e.message);
      await c.destroy(body.previewId).catch(() => {});
      throw e;
    }
  }

  #ready(p: PreviewRecord): void {
    if (p.state.kind === 'starting') p.state = { kind: 'ready' };
    this.#c.onReady?.(p);
  }

  /**
   * A claim that returned while the daemon installs dependencies: the preview turns ready when the
   * dev server answers. An install that fails is the daemon's `error` status (the sandbox stays, so an
   * edit of package.json can fix it), not a failed preview.
   */
  #readyLater(p: PreviewRecord): void {
    void waitReady(p.box.upstream, {
      timeoutMs: this.#c.readyTimeoutMs,
      intervalMs: 250,
      isDead: () => (p.state.kind === 'failed' ? p.state.reason : undefined),
    })
      .then(() => this.#ready(p))
      .catch((e: Error) =>
        this.#c.log.info({ previewId: p.id, err: e.message }, 'preview not ready after install'),
      );
  }

  /**
   * A warm sandbox for `previewId`. The environment goes in before the preview is tracked (nothing
   * routes to it yet): from the daemon's answer on it is not ready until its dev server runs with the
   * environment, so the health wait of the claim covers the restart and the app never answers
   * without it. The rename that records the session runs beside the file load.
   */
  async #takeWarm(
    w: WarmSandbox,
    previewId: string,
    appEnv: Record<string, string> | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ box: SandboxInfo; assigned: Promise<void> }> {
    if (appEnv)
      try {
        await setAppEnv(w.box.upstream, w.box.daemonToken, appEnv, signal);
      } catch (e) {
        w.link.close();
        void this.#c.runtime.remove(w.box.id).catch(() => {});
        throw e;
      }
    return { box: { ...w.box, previewId }, assigned: this.#c.runtime.assign(w.box.id, previewId) };
  }

  async #createCold(
    body: ClaimBody,
    appEnv: Record<string, string> | undefined,
    signal: AbortSignal | undefined,
  ): Promise<SandboxInfo> {
    const c = this.#c;
    if (c.pools.free() <= 0 && !this.#evictOne())
      throw new CapacityError('capacity', `node ${c.node} has no free slot`, { retryAfterMs: 5000 });
    return await c.runtime.create(
      {
        template: body.template,
        previewId: body.previewId,
        daemonToken: newDaemonToken(),
        // The daemon takes the app's environment at start, by the same rules as a warm claim's.
        env: { ...c.sandboxEnv, ...(appEnv ? { PREVIEW_APP_ENV: JSON.stringify(appEnv) } : {}) },
      },
      signal ? { signal } : {},
    );
  }

  /** Sends the user's files (cold: as soon as the daemon listens, while the dev server starts), then waits for 200. */
  async #load(
    p: PreviewRecord,
    files: ProjectFiles,
    warm: WarmSandbox | undefined,
    assigned: Promise<void>,
    signal: AbortSignal | undefined,
    steps: ClaimSteps,
  ): Promise<SettledPhase> {
    const wait = {
      timeoutMs: this.#c.readyTimeoutMs,
      isDead: () => (p.state.kind === 'failed' ? p.state.reason : undefined),
      ...(signal ? { signal } : {}),
    };
    let t = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = Math.round(now - t);
      t = now;
      return ms;
    };
    if (!warm) {
      await waitReady(p.box.upstream, { ...wait, listening: true });
      steps.listeningMs = lap();
    }
    await Promise.all([this.#sendFiles(p, files, warm?.manifest, signal), assigned]);
    steps.filesMs = lap();
    const phase = await waitReady(p.box.upstream, { ...wait, installing: true });
    steps.settledMs = lap();
    return phase;
  }

  async #sendFiles(
    p: PreviewRecord,
    files: ProjectFiles,
    known: Record<string, string> | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const manifest = known ?? (await fetchManifest(p.box.upstream, p.box.daemonToken, signal));
    const batches = diffOps(manifest, files);
    if (batches.length > 1)
      throw new InvalidInputError(
        'too_large',
        `files: the initial load must fit one batch (${LIMITS.batchOps} changed files, ${LIMITS.batchBytes} bytes)`,
      );
    // seq 0 is the initial load; the router's sync hub numbers the edits from 1.
    if (batches[0]) await p.link.send({ type: 'batch', seq: 0, ops: batches[0] });
  }

  /** Removes one warm sandbox of the fullest pool to make room for a cold claim. */
  #evictOne(): boolean {
    const c = this.#c;
    const top = Object.entries(c.pools.counts()).sort((a, b) => b[1] - a[1])[0];
    if (!top || top[1] === 0) return false;
    const victim = c.pools.acquire(top[0] as TemplateName);
    if (!victim) return false;
    victim.link.close();
    void c.runtime.remove(victim.box.id).catch(() => {});
    return true;
  }

  #result(p: PreviewRecord, warm: boolean, t0: number, phase: SettledPhase = 'ready'): ClaimResult {
    return {
      phase: phase === 'installing' ? 'installing' : 'ready',
      previewId: p.id,
      nodeId: this.#c.nodeId(),
      containerId: p.box.id,
      upstream: `${this.#c.url()}/v1/previews/${p.id}/http`,
      warm,
      ms: Math.round(performance.now() - t0),
    };
  }
}
