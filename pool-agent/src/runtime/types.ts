import type { TemplateName } from '@preview/tiers';

/** What to start: one sandbox running the preview-daemon for a template. */
export interface SandboxSpec {
  template: TemplateName;
  /** Set for a preview created directly (cold claim); absent for a warm-pool sandbox. */
  previewId?: string;
  /** Warm pool the sandbox belongs to (label `preview.pool`). */
  pool?: string;
  /** Bearer token for the daemon's control routes and sync socket. */
  daemonToken: string;
  /** Extra environment for the app (e.g. DATABASE_URL). */
  env?: Record<string, string>;
}

export type SandboxState = 'created' | 'running' | 'paused' | 'exited' | 'dead' | 'unknown';

/** A sandbox as the runtime sees it. */
export interface SandboxInfo {
  id: string;
  template: TemplateName;
  /** The preview it serves, once claimed. */
  previewId: string | undefined;
  pool: string | undefined;
  state: SandboxState;
  /**
   * Where the agent reaches the daemon port (app, HMR and control routes): `http://<host>:<port>`,
   * the sandbox's own address on its network or a port on the host's 127.0.0.1.
   */
  upstream: string;
  daemonToken: string;
  /** Set when the sandbox stopped: why. */
  exit?: { code: number | undefined; oomKilled: boolean; reason: string };
}

/** An event the runtime noticed on its own (a sandbox died). */
export interface SandboxExit {
  id: string;
  previewId: string | undefined;
  oomKilled: boolean;
  code: number | undefined;
  reason: string;
}

/**
 * What the warm pool and the agent need from a sandbox runtime. Two implementations: Docker
 * (`createDockerRuntime`) and host processes (`createProcessRuntime`). All ids are the runtime's own.
 * `remove` is repeat-safe and returns `false` for an unknown id.
 *
 * @example
 * const box = await runtime.create({ template: 'vite-react', daemonToken });
 * await runtime.assign(box.id, 'p_123');
 * await runtime.remove(box.id); // true, then false
 */
export interface ContainerRuntime {
  readonly kind: 'docker' | 'process';
  /** Whether sandboxes are isolated from the host (false for bare host processes). */
  readonly isolated: boolean;
  /**
   * How a sandbox reaches a service the agent runs for it (the database forwarder): `host` when
   * sandboxes share the host's network (host processes: a host address works as it is), else
   * `gateway` with the address of the preview network's gateway on the host (Docker), `undefined`
   * when there is none, and the network's name, subnet and host bridge interface (for the egress
   * rules) when known.
   */
  readonly network:
    | { kind: 'host' }
    | { kind: 'gateway'; address: string | undefined; name?: string; bridge?: string; subnet?: string };
  /**
   * Whether any container (this agent's or another's) is still attached to the sandboxes' own
   * network; absent for a runtime without one. The egress rules of an unused network are removed
   * when the agent closes with its sandboxes.
   */
  networkInUse?(): Promise<boolean>;
  /** Creates and starts a sandbox; returns once its process runs (not once it is ready). */
  create(spec: SandboxSpec, options?: { signal?: AbortSignal }): Promise<SandboxInfo>;
  /** Records which preview a (warm) sandbox now serves, so a restarted agent can adopt it. */
  assign(id: string, previewId: string): Promise<void>;
  pause(id: string): Promise<void>;
  unpause(id: string): Promise<void>;
  /** Stops and deletes the sandbox and its project data. */
  remove(id: string): Promise<boolean>;
  inspect(id: string): Promise<SandboxInfo | undefined>;
  /** Sandboxes of this node (by label for Docker). */
  list(): Promise<SandboxInfo[]>;
  /** Memory in use by the sandbox in bytes (cgroup accounting for Docker), if known. */
  memoryBytes(id: string): Promise<number | undefined>;
  /** The last lines of the sandbox's output. */
  logs(id: string, options?: { tail?: number }): Promise<string[]>;
  /** Subscribes to sandboxes failing: exited (crash) or a process OOM-killed. Returns an unsubscribe function. */
  onExit(listener: (exit: SandboxExit) => void): () => void;
  close(): Promise<void>;
}
