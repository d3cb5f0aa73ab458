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

type BrowserPlacement = Extract<Placement, { tier: 'browser' }>;

/**
 * The browser tier: the preview runs in the editor's own tab (WebContainers, or the esbuild-wasm
 * bundler where WebContainers cannot boot). It holds no server resources; `create` only decides the
 * runtime from the client's capabilities (`spec.client`) and remembers the placement so status and
 * destroy answer consistently. Edits go straight to the in-browser runtime, so there is no sync
 * channel.
 *
 * @example
 * const tier = createBrowserTier();
 * const p = await tier.create({ previewId, userId, template: 'vite-react', files, client: { webcontainer: true } });
 * // { tier: 'browser', previewId, runtime: 'webcontainer', template: 'vite-react' }
 */
export function createBrowserTier(): Tier {
  const previews = new Map<string, BrowserPlacement>();
  const suspended = new Set<string>();
  let closed = false;
  const known = (id: string) => {
    const p = previews.get(id);
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
      const existing = previews.get(spec.previewId);
      if (existing) return existing;
      const runtime = pickRuntime(spec.template, spec.client);
      const placement: BrowserPlacement = {
        tier: 'browser',
        previewId: spec.previewId,
        runtime,
        template: spec.template,
      };
      previews.set(spec.previewId, placement);
      return placement;
    },
    async apply(previewId: string, batch: FileBatch): Promise<Ack> {
      checkOpen();
      known(previewId);
      const parsed = FileBatch.safeParse(batch);
      if (!parsed.success)
        throw new InvalidInputError(
          'invalid_batch',
          parsed.error.issues.map((i) => `${i.path.join('.') || 'batch'}: ${i.message}`).join('; '),
        );
      // Nothing to write server-side: the editor applies the batch to its in-browser runtime.
      return { type: 'ack', seq: batch.seq, stage: 'applied' };
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
      known(previewId);
      suspended.add(previewId);
    },
    async resume(previewId: string): Promise<void> {
      checkOpen();
      known(previewId);
      suspended.delete(previewId);
    },
    async destroy(previewId: string): Promise<boolean> {
      suspended.delete(previewId);
      return previews.delete(previewId);
    },
    async status(previewId: string): Promise<TierStatus | undefined> {
      if (!previews.has(previewId)) return undefined;
      if (suspended.has(previewId)) return { phase: 'suspended' };
      return { phase: 'ready', message: 'runs in the editor’s browser' };
    },
    async capacity(): Promise<TierCapacity> {
      return closed
        ? { available: 0, total: 0 }
        : { available: Number.POSITIVE_INFINITY, total: Number.POSITIVE_INFINITY };
    },
    async close(): Promise<void> {
      closed = true;
      previews.clear();
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

function pickRuntime(template: TemplateName, client: PreviewSpec['client']): 'webcontainer' | 'bundler' {
  if (client?.webcontainer) return 'webcontainer';
  // The bundler runs client-side bundles only: no Node server, no SSR.
  if (client?.bundler && (template === 'vite-vanilla' || template === 'vite-react')) return 'bundler';
  throw new TierUnavailableError(
    'browser_unsupported',
    client?.bundler
      ? `the bundler runtime cannot run template ${template} and WebContainers are unavailable`
      : 'the client reports neither WebContainers nor the bundler runtime',
    { tier: 'browser' },
  );
}
