import type { Ack, FileBatch, NodeCapacity, PreviewPhase, TemplateName } from './wire.ts';

export type TierName = 'browser' | 'docker' | 'fly';
export const TIER_ORDER: readonly TierName[] = ['browser', 'docker', 'fly'];

/** Files of a project: path → content (utf8 text, or base64 when `encoding` says so). */
export type ProjectFiles = Record<string, string | { content: string; encoding: 'utf8' | 'base64' }>;

/** What the router asks a tier to run. */
export interface PreviewSpec {
  previewId: string;
  userId: string;
  template: TemplateName;
  files: ProjectFiles;
  /** Environment for the app (e.g. DATABASE_URL). */
  env?: Record<string, string>;
}

/** Where a preview runs. A discriminated union: an impossible combination does not compile. */
export type Placement =
  | { tier: 'docker'; previewId: string; nodeId: string; containerId: string; upstream: string }
  | {
      tier: 'fly';
      previewId: string;
      machineId: string;
      region: string;
      upstream: string;
      instanceId: string;
    }
  | { tier: 'browser'; previewId: string; runtime: 'webcontainer' | 'bundler'; template: TemplateName };

export interface TierStatus {
  phase: PreviewPhase | 'suspended';
  message?: string;
  log?: string[];
}

export interface TierCapacity {
  /** Previews this tier can still take right now (Infinity for the browser tier). */
  available: number;
  total: number;
  warm?: NodeCapacity['warm'];
}

export interface CallOptions {
  signal?: AbortSignal;
}

/**
 * The one interface every tier adapter implements, shaped by what the router needs.
 * `destroy` is repeat-safe: an unknown id returns `false`.
 *
 * @example
 * const placement = await tiers.docker.create(spec, { signal: AbortSignal.timeout(10_000) });
 * await tiers.docker.apply(spec.previewId, batch);
 * await tiers.docker.destroy(spec.previewId); // true, then false the second time
 */
export interface Tier {
  readonly name: TierName;
  create(spec: PreviewSpec, options?: CallOptions): Promise<Placement>;
  apply(previewId: string, batch: FileBatch, options?: CallOptions): Promise<Ack>;
  suspend(previewId: string, options?: CallOptions): Promise<void>;
  resume(previewId: string, options?: CallOptions): Promise<void>;
  destroy(previewId: string, options?: CallOptions): Promise<boolean>;
  status(previewId: string, options?: CallOptions): Promise<TierStatus | undefined>;
  capacity(options?: CallOptions): Promise<TierCapacity>;
  close(): Promise<void>;
}
