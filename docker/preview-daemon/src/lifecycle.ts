import type { DevServer } from './dev-server.ts';
import type { HmrTracker } from './hmr-tracker.ts';
import type { Logger } from './log.ts';
import type { DaemonStatus } from './status.ts';

/** Crash restarts back off from this delay (ms), doubling up to {@link CRASH_BACKOFF_MAX_MS}. */
export const CRASH_BACKOFF_MS = 500;
export const CRASH_BACKOFF_MAX_MS = 30_000;
/** An app that stayed up this long (ms) starts its backoff again from the first delay. */
export const CRASH_RESET_MS = 60_000;
/** The phase message while dependencies install. */
export const INSTALLING = 'installing dependencies';

/** The delay (ms) before restarting an app after its `crashes`-th crash in a row (1-based). */
export const crashDelay = (crashes: number): number =>
  Math.min(CRASH_BACKOFF_MS * 2 ** (crashes - 1), CRASH_BACKOFF_MAX_MS);

/**
 * Whether a probe of `/` says the app is up: 200, or for an API server (`anyAnswer`, which need not
 * serve a page at `/`) any answer below 500. `0` is no answer.
 */
export const isUp = (code: number, anyAnswer: boolean): boolean =>
  code === 200 || (anyAnswer && code > 200 && code < 500);

/** What the lifecycle needs. */
export interface LifecycleDeps {
  status: DaemonStatus;
  log: Logger;
  tracker: HmrTracker;
  /** The template's app is up on any answer below 500 (see {@link isUp}). */
  anyAnswer: boolean;
  /** Makes the dependencies match package.json; resolves to their key (`depsKey`; undefined without a package.json). @throws InstallError */
  ensureDeps: () => Promise<string | undefined>;
  /** The key of the dependencies package.json asks for now. */
  depsKey: () => string | undefined;
  /** Whether `ensureDeps` must run npm now (`installNeeded`), rather than link what is installed. */
  installNeeded: () => boolean;
  /** Creates (does not start) the template's dev server; `onExit` is called when it exits by itself. */
  createDevServer: (onExit: (reason: string) => void) => DevServer;
}

/**
 * The dev server's life: install, start, probe until ready, restart on a new environment, new
 * configuration or new dependencies, and back off after crashes. Steps run one at a time in a chain
 * (`settled()` waits for it). Only a dev server started after the last restart was asked for
 * (`wantedGeneration`) is ever reported ready.
 *
 * @example
 * const life = new DevLifecycle(deps);
 * life.start();
 * await life.settled();
 */
export class DevLifecycle {
  /** The running dev server, if any. */
  dev: DevServer | undefined;
  #closing = false;
  #chain: Promise<void> = Promise.resolve();
  #depsHash: string | undefined;
  // Bumped whenever the running dev server is out of date and a restart is queued (the environment
  // arrived, a server project was loaded). A dev server started before the last bump is never
  // reported ready: the queued restart's is.
  #wantedGeneration = 0;
  #devGeneration = 0;
  // Restarts queued or running: a batch that finds no dev server need not queue another.
  #restartsQueued = 0;
  // npm's message while the last install failed: the app that ran before is served, never `ready`.
  #installFailure: string | undefined;
  // Crash restarts since the app was last up for a while, and the pending one.
  #crashes = 0;
  #readyAt = 0;
  #crashTimer: NodeJS.Timeout | undefined;
  readonly #d: LifecycleDeps;

  constructor(deps: LifecycleDeps) {
    this.#d = deps;
  }

  get closing(): boolean {
    return this.#closing;
  }

  /** Queues the first boot: install, start the dev server, probe it. */
  start(): void {
    this.#then(() => this.#boot());
  }

  /** Resolves when the queued steps are done and the dev server's caches are complete. */
  async settled(): Promise<void> {
    await this.#chain;
    await this.dev?.settle?.();
  }

  /**
   * A batch was written. `pkgTouched`: it changed a dependency file; `stale`: it changed code of a
   * dev server that does not hot-swap it, and that server was not ready to reload it (it is
   * starting, or failed), or this is the claimer's initial load; `reconfigure`: it changed a file a
   * dev server reads once at start.
   */
  afterApply(pkgTouched: boolean, stale: boolean, reconfigure: boolean): void {
    if (this.#closing) return;
    const { status } = this.#d;
    if (pkgTouched && this.#d.depsKey() !== this.#depsHash) {
      // Not ready from this tick on, so nobody who saw the ack reads a stale 200 from health; and
      // `installing` only when npm will run: a key the template's installed packages still satisfy
      // (a scaffold's claim with the template's dependency fields but without its lockfile) is only
      // linked, and the claimer waits for the restarted app (or its error).
      if (this.#d.installNeeded()) status.set('installing', INSTALLING);
      else status.set('starting', 'loading the dependencies');
      this.#wantedGeneration++;
      this.#then(() => this.#reinstall());
      return;
    }
    // Not ready until a server that runs these files answers: after a claim, the template's server
    // still answering is not the user's app being up.
    if (stale) this.queueRestart('project changed', 'loading the project', true);
    else if (reconfigure)
      this.queueRestart('configuration changed', 'loading the project configuration', false);
    else if (status.phase === 'installing') return;
    else if (!this.dev?.alive && this.#restartsQueued === 0)
      this.#then(() => this.#restart('dev server was not running'));
    else if (status.phase !== 'ready') this.#then(() => this.#checkReady());
  }

  /**
   * The claim's environment arrived: not ready from this tick on (the caller sees that before its
   * answer), and the dev server restarts with it. The app never answers without it afterwards.
   */
  onEnvApplied(): void {
    this.queueRestart('environment set', 'applying the environment', false);
  }

  /**
   * Not ready from this tick on; the dev server restarts, and only the restarted one reports ready.
   * `reload`: new code only (same environment), so a dev server that can swap its process in place
   * (`DevServer.reload`) does that instead of a full stop and start.
   */
  queueRestart(reason: string, message: string, reload: boolean): void {
    this.#wantedGeneration++;
    if (this.#d.status.phase !== 'installing') this.#d.status.set('starting', message);
    this.#restartsQueued++;
    this.#then(async () => {
      try {
        // An earlier queued restart may have started its dev server after this bump: it is current.
        if (this.#devGeneration === this.#wantedGeneration && this.dev?.alive) return;
        const d = this.dev;
        if (reload && d?.alive && d.reload && !this.#closing) {
          this.#d.log.info({ reason }, 'reloading the app');
          const generation = this.#wantedGeneration;
          await d.reload();
          if (this.dev !== d) return;
          this.#devGeneration = generation;
          await this.#checkReady();
        } else await this.#restart(reason);
      } finally {
        this.#restartsQueued--;
      }
    });
  }

  /**
   * Stops restarting at once (before its first await: nothing new is queued or started from this
   * call on), then waits for the running step and closes the dev server.
   */
  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#crashTimer);
    await this.#chain.catch(() => {});
    await this.dev?.close().catch(() => {});
  }

  #then(step: () => Promise<void>): void {
    this.#chain = this.#chain.then(step);
  }

  /**
   * The dependencies changed: install them while the running app keeps answering, then restart the
   * dev server on them. A failed install leaves the app as it was, and the preview `error` with npm's
   * message until package.json changes again.
   */
  async #reinstall(): Promise<void> {
    if (this.#closing) return;
    try {
      this.#depsHash = await this.#d.ensureDeps();
      this.#installFailure = undefined;
    } catch (e) {
      this.#installFailure = (e as Error).message;
      this.#d.status.ring.push(this.#installFailure);
      this.#d.status.set('error', this.#installFailure);
      return;
    }
    await this.#restart('dependencies changed');
  }

  /** The app stopped by itself: say so, and start it again after a growing delay. */
  #onCrash(d: DevServer, reason: string): void {
    if (this.#closing || this.dev !== d) return;
    if (this.#superseded()) {
      this.#d.log.info({ reason }, 'a superseded dev server stopped');
      return;
    }
    if (this.#readyAt && Date.now() - this.#readyAt > CRASH_RESET_MS) this.#crashes = 0;
    this.#readyAt = 0;
    this.#crashes++;
    const delay = crashDelay(this.#crashes);
    this.#d.status.set('error', `${reason}\nrestarting it in ${delay / 1000} s (attempt ${this.#crashes})`);
    clearTimeout(this.#crashTimer);
    this.#crashTimer = setTimeout(() => {
      if (this.#closing || this.dev !== d || d.alive) return;
      this.#d.status.set('starting', `restarting the app after it stopped (attempt ${this.#crashes})`);
      this.#then(() => this.#restart('the app stopped'));
    }, delay);
    this.#crashTimer.unref();
  }

  async #restart(reason: string): Promise<void> {
    if (this.#closing) return;
    clearTimeout(this.#crashTimer);
    this.#d.log.info({ reason }, 'restarting dev server');
    const old = this.dev;
    this.dev = undefined;
    await old?.close().catch(() => {});
    await this.#boot();
    if (this.#d.status.phase === 'ready') this.#d.tracker.sent('restart', true);
  }

  async #boot(): Promise<void> {
    const { status } = this.#d;
    try {
      try {
        this.#depsHash = await this.#d.ensureDeps();
        this.#installFailure = undefined;
      } catch (e) {
        this.#installFailure = (e as Error).message;
        throw e;
      }
      if (this.#closing) return;
      status.set('starting', 'starting the dev server');
      this.#devGeneration = this.#wantedGeneration;
      const d: DevServer = this.#d.createDevServer((reason) => this.#onCrash(d, reason));
      this.dev = d;
      await d.start();
      await this.#checkReady();
    } catch (e) {
      status.ring.push(String((e as Error).stack ?? e));
      if (this.#superseded())
        return this.#d.log.info({ err: (e as Error).message }, 'a superseded dev server did not start');
      status.set('error', (e as Error).message);
    }
  }

  /**
   * A newer start is queued (the project, its dependencies or its environment changed after the
   * running dev server started, and the step that starts the current one is on the chain): the
   * running one ran what is being replaced, perhaps a project half written (its package.json still
   * the template's, its server.js the user's). Its stop, or its failure to start or answer, is not
   * the app's error: the queued start reports how the current project runs.
   */
  #superseded(): boolean {
    // After a failed install no start is coming: the running server is the one there is.
    return this.#devGeneration !== this.#wantedGeneration && this.#installFailure === undefined;
  }

  async #checkReady(): Promise<void> {
    const d = this.dev;
    if (!d || this.#closing) return;
    // Short first waits: a node server answers within a few probes, and a claim waits on this.
    let wait = 20;
    for (;;) {
      const code = await d.probe();
      if (this.dev !== d || this.#closing) return;
      // Started before the environment or the project arrived: the queued restart reports ready.
      const up = isUp(code, this.#d.anyAnswer);
      if ((up || code !== 0) && this.#superseded()) return;
      if (up && this.#installFailure) return this.#d.status.set('error', this.#installFailure);
      if (up) {
        this.#readyAt = Date.now();
        return this.#d.status.set('ready');
      }
      if (code !== 0) return this.#d.status.set('error', `the dev server answered ${code} on /`);
      if (!d.alive) return;
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 200);
    }
  }
}
