import {
  type Ack,
  CapacityError,
  ConflictError,
  type FileBatch,
  InvalidInputError,
  LIVE_STATES,
  NotFoundError,
  type Placement,
  type PreviewSpec,
  type ProjectFiles,
  type TemplateName,
  type Tier,
  type TierCapacity,
  type TierName,
  TierUnavailableError,
  TimeoutError,
} from '@preview/tiers';
import type { Logger } from 'pino';
import type { EventHub, PreviewEvent } from './events.ts';
import type { Metrics } from './metrics.ts';
import { type Classification, classify } from './placement/classify.ts';
import { type ClientCapabilities, place } from './placement/place.ts';
import type { SyncStore } from './store/project-files.ts';
import {
  databaseIdOf,
  type PlacementReason,
  type Session,
  type SessionStore,
  type TransitionPatch,
} from './store/sessions.ts';
import { HTTP_CLIENT } from './sync/client-order.ts';
import { coalesce } from './sync/persister.ts';

/**
 * The one write path for batches that do not come from an editor socket: the sync hub's `submit`
 * (validated, applied by the sandbox, then stored). See `SyncHub.submit`.
 */
export interface BatchWriter {
  submit(
    previewId: string,
    batch: FileBatch,
    o?: { signal?: AbortSignal },
  ): Promise<{ applied: Ack; persisted: Ack }>;
  /** The preview ended: stop syncing it everywhere. */
  end(previewId: string, reason?: string): void;
  /**
   * The preview moves to another tier: its owner persists what it holds and lets go, and its editors
   * reconnect and replay (the next owner opens the new tier's channel). Resolves once this replica's
   * owner has flushed.
   */
  moved?(previewId: string, reason: string): Promise<void>;
}

/** What the router needs of db-isolation (`createDbIsolation(...)`), structurally. */
/** A preview whose sandbox was taken away is re-placed at most this many times in REPLACE_WINDOW_MS. */
export const REPLACE_LIMIT = 3;
export const REPLACE_WINDOW_MS = 10 * 60_000;

/** How often a placement in flight touches its session's row (`SessionStore.keepPlacing`), ms. */
export const PLACING_TOUCH_MS = 5_000;

export interface PreviewDatabases {
  /**
   * Host and port the `DATABASE_URL`s point at; announced to agents at registration so each
   * forwards previews' database traffic there (db-isolation's `endpoint`).
   */
  readonly endpoint?: { host: string; port: number } | undefined;
  create(previewId: string): Promise<{ databaseUrl: string; prismaDatabaseUrl?: string }>;
  drop(previewId: string): Promise<boolean>;
  export(previewId: string): Promise<AsyncIterable<string | Uint8Array> | string>;
  /**
   * Copies the schema with its rows into another database in one transaction there, checked
   * (db-isolation `deploy`; its errors name the field and what failed).
   */
  deploy(
    previewId: string,
    /** `address`: the IP to connect to instead of resolving the URL's host (the checked one). */
    target: { databaseUrl: string; schema?: string; replace?: boolean; address?: string },
  ): Promise<{
    schema: string;
    tables: Array<{ name: string; rows: number }>;
    sequences: Array<{ name: string; value: string | null }>;
    replaced: string[];
    ms: number;
  }>;
  /** Runs SQL in the schema as the preview's role, in one transaction (db-isolation `seed`). */
  seed(previewId: string, sql: string): Promise<{ ms: number }>;
  runJanitor(options: {
    isLive: (previewIds: string[]) => Promise<Set<string>>;
    graceMs: number;
  }): Promise<unknown>;
}

export type Tiers = Partial<Record<TierName, Tier>>;

export interface CreateInput {
  files: ProjectFiles;
  template?: TemplateName | undefined;
  client: ClientCapabilities;
  serverOnly?: boolean | undefined;
  /**
   * The editor's app id (validated by the route: `ProjectId` in schemas.ts). One live preview per
   * (user, project); see {@link PreviewService.create}.
   */
  projectId?: string | undefined;
}

/** Failures that send placement on to the next tier (a tier that is down, full, or too slow). */
const FALL_THROUGH = (e: unknown) =>
  e instanceof TierUnavailableError ||
  e instanceof CapacityError ||
  e instanceof TimeoutError ||
  // AbortSignal.timeout() rejects with a DOMException named TimeoutError.
  (e instanceof Error && e.name === 'TimeoutError');

/**
 * The preview lifecycle: create (classify → place → walk the tiers under one preview id), files,
 * suspend / resume / delete, readiness tracking. Ownership is checked by every method that takes
 * a `userId`.
 */
export class PreviewService {
  readonly store: SessionStore;
  readonly tiers: Tiers;
  readonly events: EventHub;
  readonly #databases: PreviewDatabases | undefined;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #maxLive: number;
  readonly #watching = new Map<string, AbortController>();
  readonly #onServerLive: ((previewId: string) => void) | undefined;
  readonly #writer: () => BatchWriter | undefined;
  readonly #files: SyncStore | undefined;
  readonly #placeTimeoutMs: number;

  constructor(o: {
    store: SessionStore;
    tiers: Tiers;
    events: EventHub;
    databases?: PreviewDatabases | undefined;
    log: Logger;
    metrics: Metrics;
    maxLivePerUser: number;
    /** Called when a preview starts (placed or resumed) on a server tier, i.e. it has a sync channel. */
    onServerLive?: ((previewId: string) => void) | undefined;
    /** The sync hub, once built: where `applyFiles` sends batches of server-tier previews. */
    writer?: (() => BatchWriter | undefined) | undefined;
    /** Where `applyFiles` commits batches of browser-tier previews (no sandbox to apply them). */
    files?: SyncStore | undefined;
    /**
     * How long one tier may take to place a preview before the next is tried, ms: the router setting
     * `PLACE_TIMEOUT_MS` (config.ts says why it must not undercut the tiers' own deadlines).
     */
    placeTimeoutMs: number;
  }) {
    this.store = o.store;
    this.tiers = o.tiers;
    this.events = o.events;
    this.#databases = o.databases;
    this.#log = o.log;
    this.#metrics = o.metrics;
    this.#maxLive = o.maxLivePerUser;
    this.#onServerLive = o.onServerLive;
    this.#writer = o.writer ?? (() => undefined);
    this.#files = o.files;
    this.#placeTimeoutMs = o.placeTimeoutMs;
  }

  tier(name: TierName | null): Tier | undefined {
    return name ? this.tiers[name] : undefined;
  }

  /**
   * Creates (or, for a repeated idempotency key, returns) a preview. Only the request that
   * inserted the session places it, so a repeated key never starts a second container.
   * `idempotency.bodyHash` (SHA-256 hex of the request body) is kept with the key: the key reused
   * with another body throws InvalidInputError `idempotency_mismatch`.
   *
   * With `input.projectId` (the editor's app id) there is one live preview per (user, project),
   * made exact by `SessionStore.create` (per-user lock and a unique index): the live one is returned
   * (`created: false`), woken first when it is suspended. When the project's previews all ended, the
   * new one starts from the project's stored files (the last persisted files of its newest preview;
   * `input.files` only seed a project with none) and uses the project's database (`databaseId`),
   * so it finds the data its predecessors left.
   *
   * @throws CapacityError `too_many_previews`, InvalidInputError `idempotency_mismatch`
   */
  async create(
    userId: string,
    input: CreateInput,
    idempotency?: { key: string; bodyHash?: string | undefined },
  ): Promise<{ session: Session; created: boolean }> {
    const files = await this.#projectFiles(userId, input);
    const detected = classify(files);
    const classification: Classification = input.template
      ? { ...detected, template: input.template }
      : detected;
    const { session, created } = await this.store.create({
      userId,
      template: classification.template,
      classification,
      idempotencyKey: idempotency?.key,
      idempotencyBodyHash: idempotency?.bodyHash,
      projectId: input.projectId,
      maxLive: this.#maxLive,
      files,
    });
    if (!created) {
      if (input.projectId && session.state === 'suspended')
        return { session: await this.resumeSession(session), created };
      return { session, created };
    }
    const placed = await this.#place(session, classification, input.client, input.serverOnly ?? false, files);
    return { session: placed, created: true };
  }

  /**
   * The files a create starts from: with a project whose newest preview is no longer live, that
   * preview's stored files (when it has any); otherwise `input.files`.
   */
  async #projectFiles(userId: string, input: CreateInput): Promise<ProjectFiles> {
    if (!input.projectId) return input.files;
    const last = await this.store.latestInProject(userId, input.projectId);
    if (!last || LIVE_STATES.includes(last.state)) return input.files;
    const stored = await this.store.loadFiles(last.id);
    return Object.keys(stored).length > 0 ? stored : input.files;
  }

  /**
   * The user's live preview of project `projectId` (`GET /v1/projects/:projectId/preview`).
   * @throws NotFoundError when there is none (also for another user's project)
   */
  async liveInProject(userId: string, projectId: string): Promise<Session> {
    const s = await this.store.liveInProject(userId, projectId);
    if (!s) throw new NotFoundError('not_found', `project ${projectId} has no live preview`);
    return s;
  }

  async #capacities(): Promise<Partial<Record<TierName, TierCapacity>>> {
    const out: Partial<Record<TierName, TierCapacity>> = {};
    await Promise.all(
      Object.entries(this.tiers).map(async ([name, tier]) => {
        try {
          out[name as TierName] = await tier!.capacity({ signal: AbortSignal.timeout(2000) });
        } catch {
          // Unknown capacity: let create decide.
        }
      }),
    );
    return out;
  }

  async #place(
    session: Session,
    classification: Classification,
    client: ClientCapabilities,
    serverOnly: boolean,
    files: ProjectFiles,
    only?: { tier: TierName; prior: PlacementReason[] },
  ): Promise<Session> {
    // While this replica places the preview, its row says so (`updated_at`): a replica that dies
    // mid-placement stops touching it, and the reconcile job takes the placement over (jobs.ts).
    const keep = setInterval(() => void this.store.keepPlacing(session.id).catch(() => {}), PLACING_TOUCH_MS);
    try {
      return await this.#placeOn(session, classification, client, serverOnly, files, only);
    } finally {
      clearInterval(keep);
    }
  }

  async #placeOn(
    session: Session,
    classification: Classification,
    client: ClientCapabilities,
    serverOnly: boolean,
    files: ProjectFiles,
    only?: { tier: TierName; prior: PlacementReason[] },
  ): Promise<Session> {
    const enabled = Object.keys(this.tiers) as TierName[];
    const decision = place(classification, client, await this.#capacities(), {
      enabled,
      serverOnly,
      ...(only ? { only: only.tier } : {}),
    });
    const reasons: PlacementReason[] = [...(only?.prior ?? []), ...decision.reasons];
    let env: Record<string, string> | undefined;
    for (const name of decision.candidates) {
      const tier = this.tiers[name]!;
      try {
        if (name !== 'browser' && classification.needsDatabase && !env) {
          if (!this.#databases)
            throw new TierUnavailableError('tier_unavailable', 'this deployment has no preview database', {
              tier: name,
            });
          // A preview of a project uses the project's database (kept across its previews).
          const db = await this.#databases.create(databaseIdOf(session));
          // Prisma ignores search_path: it gets the schema in its own variable (db-isolation README).
          env = {
            DATABASE_URL: db.databaseUrl,
            ...(db.prismaDatabaseUrl ? { PRISMA_DATABASE_URL: db.prismaDatabaseUrl } : {}),
          };
        }
        const spec: PreviewSpec = {
          previewId: session.id,
          userId: session.userId,
          template: classification.template,
          files,
          ...(env ? { env } : {}),
          client,
        };
        const placement = await tier.create(spec, { signal: AbortSignal.timeout(this.#placeTimeoutMs) });
        reasons.push({
          tier: name,
          outcome: 'chosen',
          reason: chosenReason(name, classification, placement),
        });
        this.#metrics.creates.inc({ tier: name, outcome: 'placed' });
        const next: 'ready' | 'starting' = name === 'browser' ? 'ready' : 'starting';
        const event = { type: 'state' as const, state: next, tier: name, at: Date.now() };
        const placed = await this.changeState(session.id, event, {
          tier: name,
          placement,
          nodeId: placement.tier === 'docker' ? placement.nodeId : null,
          reasons,
          error: null,
        });
        if (next === 'starting') {
          this.watchReadiness(session.id);
          this.#onServerLive?.(session.id);
        }
        return placed;
      } catch (e) {
        if (!FALL_THROUGH(e)) {
          const failed = await this.#fail(session, reasons, `${name}: ${(e as Error).message}`);
          this.#log.error({ err: e, previewId: session.id, tier: name }, 'placement failed');
          return failed;
        }
        reasons.push({ tier: name, outcome: 'failed', reason: (e as Error).message });
        this.#metrics.fallbacks.inc({ tier: name });
        this.#log.info(
          { previewId: session.id, tier: name, reason: (e as Error).message },
          'tier failed, trying the next',
        );
      }
    }
    this.#metrics.creates.inc({ tier: 'none', outcome: 'unplaced' });
    return await this.#fail(session, reasons, 'no tier could run this preview');
  }

  /**
   * A node reports that a preview's sandbox stopped for good (e.g. the container was OOM-killed):
   * the session becomes `failed` with the node's reason, and GET / SSE show it at once (a `state`
   * event). Only the node the preview is placed on may report it; a preview already ended, failed
   * or on its way out is left alone (repeat-safe: returns the session unchanged).
   *
   * @throws NotFoundError when the preview is not on `nodeId`
   */
  async failedOnNode(nodeId: string, id: string, reason: string, oomKilled = false): Promise<Session> {
    const s = await this.store.get(id);
    if (!s || s.nodeId !== nodeId) throw new NotFoundError('not_found', `preview ${id} is not on this node`);
    if (['failed', 'ended', 'stopping', 'migrating'].includes(s.state)) return s;
    // The sandbox was taken away (killed, its engine restarted), not outgrown: the preview moves to
    // a new sandbox from its stored files, as after a node loss; at most REPLACE_LIMIT times in
    // REPLACE_WINDOW_MS, so a sandbox that keeps dying ends `failed`.
    if (!oomKilled && (await this.store.recentMigrations(id, REPLACE_WINDOW_MS)) < REPLACE_LIMIT) {
      try {
        const m = await this.changeState(
          id,
          { type: 'state', state: 'migrating', at: Date.now() },
          { nodeId: null, error: `sandbox stopped: ${reason}` },
        );
        this.#log.warn({ previewId: id, nodeId, reason }, 'sandbox lost: re-placing the preview');
        void this.continueMigration(m).catch((err: unknown) =>
          this.#log.warn({ err, previewId: id }, 're-placing a preview whose sandbox was lost failed'),
        );
        return m;
      } catch (e) {
        if (e instanceof ConflictError) return (await this.store.get(id)) ?? s;
        throw e;
      }
    }
    const error = `sandbox stopped: ${reason}`;
    let failed: Session;
    try {
      failed = await this.changeState(
        id,
        { type: 'state', state: 'failed', error, at: Date.now() },
        { error },
      );
    } catch (e) {
      if (e instanceof ConflictError) return (await this.store.get(id)) ?? s;
      throw e;
    }
    this.#log.warn({ previewId: id, nodeId, reason }, 'preview failed on its node');
    return failed;
  }

  /**
   * Moves preview `id` to `event.state` and stores `event` in the same statement (one commit: a
   * refused transition stores no event, and the event's id is taken under the preview's row lock,
   * so the preview's events commit in id order), then fans it out.
   * @throws ConflictError `invalid_transition` when the preview's state cannot lead there (nothing stored)
   * @throws NotFoundError when there is no such preview
   */
  async changeState(
    id: string,
    event: Extract<PreviewEvent, { type: 'state' }>,
    patch: TransitionPatch = {},
  ): Promise<Session> {
    const { type, ...data } = event;
    const next = await this.store.transition(id, event.state, patch, { kind: type, data });
    await this.events.broadcast(id, event);
    return next;
  }

  async #fail(session: Session, reasons: PlacementReason[], error: string): Promise<Session> {
    const id = session.id;
    const s = await this.changeState(
      id,
      { type: 'state', state: 'failed', error, at: Date.now() },
      { reasons, error },
    );
    // A project's database is the project's: retention drops it, not one failed preview.
    if (!session.databaseId) await this.#databases?.drop(id).catch(() => false);
    return s;
  }

  /**
   * Polls the tier until the preview is ready (or errors), moving `starting → ready` and publishing
   * status. Runs once per preview per process; the sync hub may publish richer status meanwhile.
   */
  watchReadiness(id: string, timeoutMs = 10 * 60_000): void {
    if (this.#watching.has(id)) return;
    const ac = new AbortController();
    this.#watching.set(id, ac);
    const deadline = Date.now() + timeoutMs;
    void (async () => {
      let delay = 100;
      let lastPhase = '';
      let logCount = 0;
      try {
        while (!ac.signal.aborted && Date.now() < deadline) {
          const s = await this.store.get(id);
          if (s?.state !== 'starting') return;
          const tier = this.tier(s.tier);
          const st = await tier?.status(id).catch(() => undefined);
          if (st) {
            if (st.log && st.log.length > logCount) {
              await this.events.publish(id, { type: 'log', lines: st.log.slice(logCount), at: Date.now() });
              logCount = st.log.length;
            } else if (st.log && st.log.length < logCount) logCount = st.log.length;
            if (st.phase !== lastPhase) {
              lastPhase = st.phase;
              await this.events.publish(id, {
                type: 'status',
                phase: st.phase,
                ...(st.message ? { message: st.message } : {}),
                at: Date.now(),
              });
            }
            if (st.phase === 'ready') {
              // Refused when the preview was stopped or suspended meanwhile: then no `ready` is stored.
              await this.changeState(id, {
                type: 'state',
                state: 'ready',
                tier: s.tier,
                at: Date.now(),
              }).catch((e: unknown) => {
                if (!(e instanceof ConflictError)) throw e;
              });
              return;
            }
          }
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 1.5, 1000);
        }
      } catch (err) {
        this.#log.warn({ err, previewId: id }, 'readiness watch failed');
      } finally {
        this.#watching.delete(id);
      }
    })();
  }

  /** Resolves when `id` is ready, or throws TimeoutError / ConflictError (failed, ended). */
  async waitReady(id: string, timeoutMs: number): Promise<Session> {
    const deadline = Date.now() + timeoutMs;
    let delay = 50;
    for (;;) {
      const s = await this.store.get(id);
      if (!s) throw new NotFoundError('not_found', `preview ${id} not found`);
      if (s.state === 'ready') return s;
      if (!LIVE_STATES.includes(s.state)) throw new ConflictError('conflict', `preview ${id} is ${s.state}`);
      if (Date.now() >= deadline)
        throw new TimeoutError('timeout', `preview ${id} is not ready yet (${s.state})`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 1.5, 500);
    }
  }

  async get(userId: string, id: string): Promise<Session> {
    return await this.store.getOwned(id, userId);
  }

  /** Stops and removes a preview; repeat-safe (an ended preview answers false). */
  async delete(userId: string, id: string): Promise<boolean> {
    const s = await this.store.getOwned(id, userId);
    return await this.destroy(s);
  }

  async destroy(s: Session): Promise<boolean> {
    if (s.state === 'ended') return false;
    if (s.state !== 'stopping') await this.store.transition(s.id, 'stopping');
    this.#watching.get(s.id)?.abort();
    // Before the sandbox goes: nothing may retry a sync channel against it.
    this.#writer()?.end(s.id, `preview ${s.id} is being deleted`);
    await this.tier(s.tier)
      ?.destroy(s.id)
      .catch((err) => this.#log.warn({ err, previewId: s.id }, 'tier destroy failed'));
    // A project's database outlives its previews (the next one finds the data); retention drops it.
    if (s.needsDatabase && !s.databaseId) await this.#databases?.drop(s.id).catch(() => false);
    await this.changeState(s.id, { type: 'state', state: 'ended', at: Date.now() });
    return true;
  }

  async suspend(userId: string, id: string): Promise<Session> {
    const s = await this.store.getOwned(id, userId);
    return await this.suspendSession(s);
  }

  async suspendSession(s: Session): Promise<Session> {
    if (s.state === 'suspended') return s;
    if (s.state !== 'ready')
      throw new ConflictError(
        'invalid_transition',
        `preview ${s.id} is ${s.state}; only a ready preview can be suspended`,
      );
    await this.tier(s.tier)?.suspend(s.id);
    return await this.changeState(s.id, { type: 'state', state: 'suspended', tier: s.tier, at: Date.now() });
  }

  /**
   * Resumes the user's suspended preview (a live one is returned as it is, repeat-safe).
   * @throws ConflictError `preview_ended` for one that failed, ended or is stopping (as an edit is
   *   answered): nothing can resume it; a new create (or the project's next open) makes another
   * @throws NotFoundError (unknown, or another user's preview)
   */
  async resume(userId: string, id: string): Promise<Session> {
    const s = await this.store.getOwned(id, userId);
    if (s.state === 'failed' || s.state === 'ended' || s.state === 'stopping')
      throw new ConflictError('preview_ended', `preview ${id} is ${s.state}; it cannot be resumed`);
    return await this.resumeSession(s);
  }

  /**
   * `suspended → starting`, tier resume, then readiness tracking. A second concurrent resume is a
   * no-op. A wake is activity (`last_view_at`): only a person wakes a preview (a page view, the
   * preview client's ping, the API), and the next idle check must not suspend it again at once.
   */
  async resumeSession(s: Session): Promise<Session> {
    if (s.state !== 'suspended') return s;
    let next: Session;
    try {
      next = await this.changeState(s.id, { type: 'state', state: 'starting', tier: s.tier, at: Date.now() });
    } catch (e) {
      if (e instanceof ConflictError) return (await this.store.get(s.id)) ?? s;
      throw e;
    }
    this.#metrics.wakes.inc();
    await this.store.touch(s.id, 'view');
    await this.tier(s.tier)?.resume(s.id);
    this.watchReadiness(s.id);
    if (s.tier && s.tier !== 'browser') this.#onServerLive?.(s.id);
    return next;
  }

  /**
   * Wakes preview `id` when it is suspended (an edit or a sync connect reached it: the sync hub's
   * `wake`); any other state is left alone. Returns the session as it is afterwards, or undefined
   * when there is none. Callers have checked ownership.
   */
  async wake(id: string): Promise<Session | undefined> {
    const s = await this.store.get(id);
    if (s?.state !== 'suspended') return s;
    this.#log.info({ previewId: id }, 'edit or sync connect wakes a suspended preview');
    return await this.resumeSession(s);
  }

  /**
   * A batch from `PUT /files`, on the one write path. A server-tier preview's batch goes through the
   * sync hub (client `HTTP_CLIENT`): the sandbox applies it, then it is stored; a refusal stores
   * nothing. A browser-tier preview has no sandbox here: what validation accepted is committed.
   * Either way the seq must be above the last one the preview took from HTTP. A suspended preview
   * is woken first; the batch is applied once the sandbox is back and acked as usual.
   * @throws InvalidInputError (refused), ConflictError (`stale_seq`, `duplicate_seq`, `preview_ended`)
   */
  async applyFiles(userId: string, id: string, batch: FileBatch): Promise<{ applied: Ack; persisted: Ack }> {
    let s = await this.store.getOwned(id, userId);
    if (!LIVE_STATES.includes(s.state))
      throw new ConflictError('preview_ended', `preview ${id} is ${s.state}`);
    if (s.state === 'suspended') s = await this.resumeSession(s);
    // No `touch` here: the write itself sets last_edit_at, and a refused batch changes nothing.
    if (s.tier === 'browser' && this.#files) {
      await this.#files.commitAccepted(id, {
        client: HTTP_CLIENT,
        clientSeq: batch.seq,
        steps: (seq) => coalesce([{ seq, ops: batch.ops, clientId: HTTP_CLIENT, clientSeq: batch.seq }]),
      });
      return {
        applied: { type: 'ack', seq: batch.seq, stage: 'applied' },
        persisted: { type: 'ack', seq: batch.seq, stage: 'persisted' },
      };
    }
    const writer = this.#writer();
    if (!writer)
      throw new TierUnavailableError(
        'no_sync_channel',
        `preview ${id}: this router runs no sync hub to apply files`,
        { tier: s.tier ?? 'none' },
      );
    return await writer.submit(id, batch, { signal: AbortSignal.timeout(30_000) });
  }

  async exportDatabase(userId: string, id: string): Promise<AsyncIterable<string | Uint8Array> | string> {
    const s = await this.store.getOwned(id, userId);
    if (!s.needsDatabase || !this.#databases)
      throw new NotFoundError('no_database', `preview ${id} has no database`);
    return await this.#databases.export(databaseIdOf(s));
  }

  /** Re-places a session whose node died, from its stored files (reconcile). */
  async migrate(s: Session): Promise<Session> {
    const m = await this.changeState(
      s.id,
      { type: 'state', state: 'migrating', at: Date.now() },
      { nodeId: null },
    );
    return await this.continueMigration(m);
  }

  /**
   * Takes over a create whose replica died mid-placement (the reconcile job, after `claimStale` of
   * its `provisioning` row): the preview is placed on a server tier from the files stored with it,
   * under the same id, so the client's retry (same Idempotency-Key, or the same project) finds it
   * starting. Browser capabilities are unknown here, so a server tier, as for a migration.
   *
   * @returns the placed (or failed) session, or `undefined` when no files were stored with it
   *   (nothing to place; the caller fails it)
   */
  async continueCreate(p: Session): Promise<Session | undefined> {
    const files = await this.store.loadFiles(p.id);
    if (Object.keys(files).length === 0) return undefined;
    this.#log.info({ previewId: p.id }, 'taking over a create abandoned mid-placement');
    const classification = {
      ...classify(files),
      ...(p.classification as Partial<Classification>),
      template: p.template,
    };
    return await this.#place(p, classification, { webcontainer: false, bundler: false }, true, files);
  }

  /**
   * Places migrating session `m` from its stored files (what `migrate` does after the state change);
   * the reconcile job calls it for a migration whose replica died mid-way (see `claimStale`).
   */
  async continueMigration(m: Session): Promise<Session> {
    const files = await this.store.loadFiles(m.id);
    const classification = { ...classify(files), template: m.template };
    return await this.#place(m, classification, { webcontainer: false, bundler: false }, true, files);
  }

  /**
   * Moves a browser-tier preview to server tier `to` under the same id (the same-id fallback): its
   * files (as stored in `project_files`, edits included), its database and its id stay; the reason
   * is recorded in `reasons` (`{tier: 'browser', outcome: 'failed', reason: 'moved to docker: …'}`).
   * The sync hub hands its editors over to the new tier (they reconnect and replay). A preview
   * already on `to` is returned as it is (repeat-safe).
   *
   * @param reason why (a runtime that did not boot, a package the bundler cannot bundle, the user's
   *   wish): 1–500 characters
   * @throws InvalidInputError `invalid_tier` (not docker/fly, or not configured here), `invalid_reason`
   * @throws ConflictError `not_browser` (on another server tier), `invalid_transition` (not live)
   * @throws NotFoundError (unknown, or another user's preview)
   */
  async moveToServer(userId: string, id: string, to: TierName, reason: string): Promise<Session> {
    if ((to !== 'docker' && to !== 'fly') || !this.tiers[to])
      throw new InvalidInputError(
        'invalid_tier',
        `tier: must be a server tier this router runs (${Object.keys(this.tiers)
          .filter((t) => t !== 'browser')
          .join(', ')}), got ${JSON.stringify(to)} (rule enum)`,
      );
    if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 500)
      throw new InvalidInputError('invalid_reason', 'reason: 1-500 characters (rule length)');
    const s = await this.store.getOwned(id, userId);
    if (s.tier === to && s.state !== 'failed') return s;
    if (s.tier !== 'browser')
      throw new ConflictError(
        'not_browser',
        `preview ${id} runs on the ${s.tier ?? 'no'} tier, not in the browser`,
      );
    if (!['ready', 'starting', 'suspended'].includes(s.state))
      throw new ConflictError('invalid_transition', `preview ${id} is ${s.state}; it cannot move`);
    const m = await this.changeState(s.id, { type: 'state', state: 'migrating', at: Date.now() });
    this.#log.info({ previewId: id, to, reason }, 'browser preview moves to a server tier');
    await this.#writer()
      ?.moved?.(id, `preview moves to the ${to} tier`)
      .catch((err: unknown) => this.#log.warn({ err, previewId: id }, 'sync hand-over failed'));
    await this.tier('browser')
      ?.destroy(id)
      .catch(() => false);
    const files = await this.store.loadFiles(id);
    const classification: Classification = {
      ...classify(files),
      ...(s.classification as Partial<Classification>),
      template: s.template,
    };
    return await this.#place(m, classification, { webcontainer: false, bundler: false }, true, files, {
      tier: to,
      prior: [...s.reasons, { tier: 'browser', outcome: 'failed', reason: `moved to ${to}: ${reason}` }],
    });
  }

  close(): void {
    for (const ac of this.#watching.values()) ac.abort();
  }
}

function chosenReason(name: TierName, c: Classification, p: Placement): string {
  if (p.tier === 'browser') return `frontend-only ${c.template} app runs in the browser (${p.runtime})`;
  const what = c.needsDatabase
    ? 'full-stack app with a database'
    : c.fullStack
      ? 'full-stack app'
      : `${c.template} app`;
  const where = p.tier === 'docker' ? `node ${p.nodeId}${p.reason ? `; ${p.reason}` : ''}` : p.region;
  return `${what} runs on the ${name} tier (${where})`;
}
