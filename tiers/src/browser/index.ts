import { InvalidInputError, NotFoundError, TierUnavailableError } from '../errors.ts';
import { pathProblem } from '../paths.ts';
import type {
  CallOptions,
  Placement,
  PreviewSpec,
  SyncChannel,
  Tier,
  TierCapacity,
  TierStatus,
} from '../types.ts';
import { type Ack, FileBatch, TemplateName } from '../wire.ts';

export type BrowserPlacement = Extract<Placement, { tier: 'browser' }>;

/** A browser placement as its record holds it. */
export interface BrowserPlacementRecord {
  placement: BrowserPlacement;
  /** The editor's runtime is parked: `status` answers `suspended`. */
  suspended: boolean;
}

/**
 * Where the browser tier keeps its placements. The router's is the `preview_sessions` row (Postgres),
 * so a restarted router or another replica sees every browser preview; `memoryBrowserPlacements()`
 * is for a tier used without a router (unit tests, tools).
 */
export interface BrowserPlacements {
  /** The live (not ended) placement of `previewId`, or undefined. */
  get(previewId: string): Promise<BrowserPlacementRecord | undefined>;
  /** Records a new placement (the router's store records it with the session right after `create`). */
  save(placement: BrowserPlacement): Promise<void>;
  /** Marks the placement suspended or not (the router's store reads it from the session state). */
  setSuspended(previewId: string, suspended: boolean): Promise<void>;
  /** Forgets the placement; false when there was none (repeat-safe). */
  remove(previewId: string): Promise<boolean>;
}

/** Placements in this process only (lost on restart): for a tier used without a router. */
export function memoryBrowserPlacements(): BrowserPlacements {
  const records = new Map<string, BrowserPlacementRecord>();
  return {
    async get(id) {
      const r = records.get(id);
      return r ? { ...r } : undefined;
    },
    async save(placement) {
      records.set(placement.previewId, { placement, suspended: false });
    },
    async setSuspended(id, suspended) {
      const r = records.get(id);
      if (r) r.suspended = suspended;
    },
    async remove(id) {
      return records.delete(id);
    },
  };
}

/** Options of `createBrowserTier`. */
export interface BrowserTierOptions {
  /** Where placements are kept. @default memoryBrowserPlacements() (per process) */
  placements?: BrowserPlacements;
}

/**
 * The browser tier: the preview runs in the editor's own tab (WebContainers, or the esbuild-wasm
 * bundler where WebContainers cannot boot). It holds no server resources; `create` decides the
 * runtime from the client's capabilities (`spec.client`) and records the placement in
 * `options.placements` so status, suspend and destroy answer consistently across restarts.
 *
 * There is no sandbox on the server side: edits go through the router's sync hub, which persists
 * them to `project_files` (ack `persisted`), while the editor's runtime applies them (its
 * `PreviewClient` reports `applied`). So `apply` never acks: it throws `TierUnavailableError`
 * `no_sandbox`, and `openSync` throws `no_sync_channel`.
 *
 * @example
 * const tier = createBrowserTier({ placements: sessionBrowserPlacements(pool) });
 * const p = await tier.create({ previewId, userId, template: 'vite-react', files, client: { webcontainer: true } });
 * // { tier: 'browser', previewId, runtime: 'webcontainer', template: 'vite-react' }
 */
export function createBrowserTier(options: BrowserTierOptions = {}): Tier {
  const placements = options.placements ?? memoryBrowserPlacements();
  let closed = false;
  const known = async (id: string) => {
    const p = await placements.get(id);
    if (!p) throw new NotFoundError('not_found', `browser preview ${id} not found`);
    return p;
  };
  const checkOpen = () => {
    if (closed)
      throw new TierUnavailableError('tier_unavailable', 'browser tier is closed', { tier: 'browser' });
  };
  return {
    name: 'browser',
    async create(spec: PreviewSpec, options?: CallOptions): Promise<Placement> {
      checkOpen();
      options?.signal?.throwIfAborted();
      checkSpec(spec);
      const existing = await placements.get(spec.previewId);
      if (existing) return existing.placement;
      const runtime = pickRuntime(spec.template, spec.client);
      const placement: BrowserPlacement = {
        tier: 'browser',
        previewId: spec.previewId,
        runtime,
        template: spec.template,
      };
      await placements.save(placement);
      return placement;
    },
    async apply(previewId: string, batch: FileBatch): Promise<Ack> {
      checkOpen();
      await known(previewId);
      const parsed = FileBatch.safeParse(batch);
      if (!parsed.success)
        throw new InvalidInputError(
          'invalid_batch',
          parsed.error.issues.map((i) => `${i.path.join('.') || 'batch'}: ${i.message}`).join('; '),
        );
      throw new TierUnavailableError(
        'no_sandbox',
        `preview ${previewId} runs in the editor's browser: its runtime applies edits (the router's sync hub only persists them)`,
        { tier: 'browser' },
      );
    },
    async openSync(previewId: string): Promise<SyncChannel> {
      throw new TierUnavailableError(
        'no_sync_channel',
        `preview ${previewId} runs in the browser: edits go straight to the in-browser runtime`,
        { tier: 'browser' },
      );
    },
    // The tab's runtime keeps running; suspension is bookkeeping the editor reads back from status.
    async suspend(previewId: string): Promise<void> {
      checkOpen();
      await known(previewId);
      await placements.setSuspended(previewId, true);
    },
    async resume(previewId: string): Promise<void> {
      checkOpen();
      await known(previewId);
      await placements.setSuspended(previewId, false);
    },
    async destroy(previewId: string): Promise<boolean> {
      return await placements.remove(previewId);
    },
    async status(previewId: string): Promise<TierStatus | undefined> {
      const r = await placements.get(previewId);
      if (!r) return undefined;
      if (r.suspended) return { phase: 'suspended' };
      return { phase: 'ready', message: 'runs in the editor’s browser' };
    },
    async capacity(): Promise<TierCapacity> {
      return closed
        ? { available: 0, total: 0 }
        : { available: Number.POSITIVE_INFINITY, total: Number.POSITIVE_INFINITY };
    },
    async close(): Promise<void> {
      closed = true;
    },
  };
}

function checkSpec(spec: PreviewSpec): void {
  if (typeof spec.previewId !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(spec.previewId))
    throw new InvalidInputError(
      'invalid_preview_id',
      'spec.previewId: 1-64 letters, digits or "-" (rule format)',
    );
  if (!TemplateName.safeParse(spec.template).success)
    throw new InvalidInputError(
      'invalid_template',
      `spec.template: unknown template ${JSON.stringify(spec.template)} (rule enum)`,
    );
  for (const path of Object.keys(spec.files ?? {})) {
    const problem = pathProblem(path);
    if (problem)
      throw new InvalidInputError(
        'invalid_path',
        `spec.files.${path}: ${problem.message} (rule ${problem.rule})`,
      );
  }
}

/** Templates the esbuild-wasm bundler runs (JS/TS, JSX/TSX, Vue single-file components; no server). */
const BUNDLER_TEMPLATES: ReadonlySet<TemplateName> = new Set([
  'vite-vanilla',
  'vite-vanilla-ts',
  'vite-react',
  'vite-react-ts',
  'vite-vue',
  'vite-vue-ts',
]);

function pickRuntime(template: TemplateName, client: PreviewSpec['client']): 'webcontainer' | 'bundler' {
  if (client?.webcontainer) return 'webcontainer';
  // The bundler runs client-side bundles only: no Node server, no SSR.
  if (client?.bundler && BUNDLER_TEMPLATES.has(template)) return 'bundler';
  throw new TierUnavailableError(
    'browser_unsupported',
    client?.bundler
      ? `the bundler runtime cannot run template ${template} and WebContainers are unavailable`
      : 'the client reports neither WebContainers nor the bundler runtime',
    { tier: 'browser' },
  );
}
