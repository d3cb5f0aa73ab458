import type { Ack, FileBatch, NodeCapacity, PreviewPhase, ServerFrame, TemplateName } from './wire.ts';

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
  /** What the editor's browser can run (the browser tier picks its runtime from this). */
  client?: { webcontainer?: boolean; bundler?: boolean };
}

/** Where a preview runs. A discriminated union: an impossible combination does not compile. */
export type Placement =
  | {
      tier: 'docker';
      previewId: string;
      nodeId: string;
      containerId: string;
      upstream: string;
      /** Why this node: its rank when placed and the nodes asked before it (`node-2 answered capacity`). */
      reason?: string;
    }
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

/** A sandbox a tier holds, as reconciliation sees it. */
export interface TierSandbox {
  previewId: string;
  /** When the sandbox was made (ms since the epoch), when the tier knows. */
  createdAt?: number;
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

export interface DestroyOptions extends CallOptions {
  /**
   * Tiers with nodes (docker): destroy what this node holds for the preview, not what the node the
   * session is placed on now holds (reconciliation of a node that still runs a preview which moved).
   */
  nodeId?: string;
}

/**
 * A live, ordered channel toward one preview's sandbox: the hot edit path. Batches go out without
 * awaiting; acks (`applied`), `hmr` and `status` frames come back through `onFrame`.
 */
export interface SyncChannel {
  /** Queues a batch; never awaits the network. Throws if the channel is closed. */
  send(batch: FileBatch): void;
  /** Subscribes to frames from the sandbox; returns an unsubscribe function. */
  onFrame(listener: (frame: ServerFrame) => void): () => void;
  /** Called once when the channel closes, with the WebSocket close code. */
  onClose(listener: (code: number, reason: string) => void): () => void;
  readonly open: boolean;
  close(): void;
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
  /** Opens the streaming edit channel (docker, fly). The browser tier has none: it throws TierUnavailableError. */
  openSync(previewId: string, options?: CallOptions): Promise<SyncChannel>;
  suspend(previewId: string, options?: CallOptions): Promise<void>;
  resume(previewId: string, options?: CallOptions): Promise<void>;
  destroy(previewId: string, options?: DestroyOptions): Promise<boolean>;
  status(previewId: string, options?: CallOptions): Promise<TierStatus | undefined>;
  capacity(options?: CallOptions): Promise<TierCapacity>;
  /**
   * Every sandbox this tier holds, for reconciliation: the router destroys those whose preview has
   * no live session (a replica died between making one and recording it, or mid-delete). Left out by
   * tiers that hold none (browser) or whose sandboxes are reported otherwise (docker: each node's
   * heartbeat lists its sessions).
   */
  sandboxes?(options?: CallOptions): Promise<TierSandbox[]>;
  /**
   * Runs the project's npm script `name` (package.json `scripts[name]`) inside the preview's sandbox
   * with the app's environment (DATABASE_URL included), to its end (the daemon's
   * `POST /__preview/scripts/<name>`). Left out by tiers without a sandbox (browser).
   * @throws NotFoundError `no_script` (package.json has no such script), `preview_not_found`;
   *   ConflictError (the preview is suspended or failed, or the script is already running).
   */
  runScript?(previewId: string, name: string, options?: CallOptions): Promise<ScriptRun>;
  close(): Promise<void>;
}

/** How one run of a project's npm script in a sandbox ended (the daemon's answer). */
export interface ScriptRun {
  name: string;
  /** The exit code; null when it was killed (`signal`). */
  exitCode: number | null;
  signal: string | null;
  /** True when it ran past the daemon's limit (120 s) and was killed. */
  timedOut: boolean;
  ms: number;
  /** The last 16 KiB of its stdout and stderr. */
  output: string;
}
