import {
  CapacityError,
  ConfigError,
  ConflictError,
  NotFoundError,
  PreviewError,
  TimeoutError,
} from '../errors.ts';
import { backoffDelay, parseRetryAfter, sleep } from './retry.ts';

/**
 * A client for Fly's Machines API (https://api.machines.dev/v1): the routes the fly tier needs, with
 * retries (full jitter, `Retry-After` honoured) on 429 and 5xx, region fallback on
 * `insufficient_capacity`, leases, and an `AbortSignal` on every call.
 *
 * @example
 * const fly = new FlyMachinesClient({ token: config.FLY_API_TOKEN, app: config.FLY_APP });
 * const m = await fly.createMachine({ regions: ['ams', 'fra'], config: { image, metadata: { preview_id } } });
 * await fly.waitForState(m.id, 'started', { instanceId: m.instance_id });
 * await fly.destroyMachine(m.id); // true, then false
 */

/** The subset of `api.MachineConfig` this project sets. Field names are Fly's. */
export interface FlyMachineConfig {
  image: string;
  env?: Record<string, string>;
  metadata?: Record<string, string>;
  guest?: { cpu_kind?: string; cpus?: number; memory_mb?: number };
  services?: Array<{
    protocol?: string;
    internal_port?: number;
    autostart?: boolean;
    autostop?: boolean;
    ports?: Array<{ port?: number; handlers?: string[]; force_https?: boolean }>;
    checks?: Array<{
      type?: string;
      port?: number;
      path?: string;
      method?: string;
      interval?: string;
      timeout?: string;
      grace_period?: string;
    }>;
  }>;
  restart?: { policy?: 'no' | 'always' | 'on-failure'; max_retries?: number };
  auto_destroy?: boolean;
  stop_config?: { signal?: string; timeout?: string };
  files?: Array<{ guest_path?: string; raw_value?: string }>;
}

export type FlyMachineState =
  | 'created'
  | 'starting'
  | 'started'
  | 'stopping'
  | 'stopped'
  | 'suspending'
  | 'suspended'
  | 'replacing'
  | 'destroying'
  | 'destroyed'
  | (string & {});

/** The subset of Fly's `Machine` this project reads. */
export interface FlyMachine {
  id: string;
  name?: string;
  state: FlyMachineState;
  region: string;
  instance_id: string;
  private_ip?: string;
  config?: FlyMachineConfig;
  created_at?: string;
  updated_at?: string;
  nonce?: string;
}

export interface FlyLease {
  nonce: string;
  expires_at?: number;
  owner?: string;
  description?: string;
  version?: string;
}

export interface FlyClientOptions {
  /** `FLY_API_TOKEN`. */
  token: string;
  /** `FLY_APP`. */
  app: string;
  /** Default `https://api.machines.dev/v1`. */
  baseUrl?: string;
  /** Retries after the first attempt on 429, 5xx and network errors (default 4). */
  maxRetries?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  /** Per-request timeout (default 30 s), combined with the caller's signal. */
  requestTimeoutMs?: number;
  /** Injected in tests to record backoff decisions. */
  random?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  fetch?: typeof fetch;
  /** Called before each retry (logging, metrics, tests). */
  onRetry?: (info: {
    method: string;
    path: string;
    status: number | 'network';
    attempt: number;
    delayMs: number;
  }) => void;
}

export interface Signalled {
  signal?: AbortSignal;
}

/**
 * A non-2xx answer from the Machines API: `options.status` is its HTTP status, `options.flyStatus`
 * the `status` field of Fly's error body (e.g. `insufficient_capacity`), when it has one.
 * @example new FlyApiError('fly_http_422', 'Fly Machines API 422: POST /apps/a/machines: bad image', { status: 422 })
 */
export class FlyApiError extends PreviewError {
  readonly status: number;
  readonly flyStatus: string | undefined;
  constructor(
    code: string,
    message: string,
    options: { status: number; flyStatus?: string | undefined; cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'FlyApiError';
    this.status = options.status;
    this.flyStatus = options.flyStatus;
  }
}

export function isInsufficientCapacity(e: unknown): boolean {
  return (
    e instanceof FlyApiError &&
    (e.flyStatus === 'insufficient_capacity' ||
      /insufficient (capacity|resources|memory|cpu)/i.test(e.message))
  );
}

const LEASE_HEADER = 'fly-machine-lease-nonce';

interface RequestOptions extends Signalled {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  leaseNonce?: string | undefined;
  /** Statuses returned to the caller instead of thrown. */
  accept?: number[];
  /** Retry 5xx? (429 is always retried: the request was not processed.) Default true. */
  retry5xx?: boolean;
  /** Runs before a retry that follows a 5xx; may end the request with a value. */
  beforeRetry?: () => Promise<unknown>;
}

export class FlyMachinesClient {
  readonly app: string;
  readonly baseUrl: string;
  readonly #token: string;
  readonly #o: Required<Omit<FlyClientOptions, 'onRetry' | 'token' | 'app' | 'baseUrl'>> & {
    onRetry: FlyClientOptions['onRetry'];
  };

  constructor(options: FlyClientOptions) {
    if (!options || typeof options.token !== 'string' || options.token.length === 0)
      throw new ConfigError(
        'invalid_config',
        'FlyMachinesClient: option "token" (FLY_API_TOKEN) is required',
      );
    if (typeof options.app !== 'string' || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(options.app))
      throw new ConfigError(
        'invalid_config',
        `FlyMachinesClient: option "app" (FLY_APP) must be a Fly app name (lowercase letters, digits, "-"), got ${JSON.stringify(options.app)}`,
      );
    const baseUrl = options.baseUrl ?? 'https://api.machines.dev/v1';
    try {
      new URL(baseUrl);
    } catch {
      throw new ConfigError('invalid_config', `FlyMachinesClient: option "baseUrl" is not a URL: ${baseUrl}`);
    }
    this.app = options.app;
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#token = options.token;
    this.#o = {
      maxRetries: options.maxRetries ?? 4,
      retryBaseMs: options.retryBaseMs ?? 250,
      retryCapMs: options.retryCapMs ?? 8_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      random: options.random ?? Math.random,
      sleep: options.sleep ?? sleep,
      fetch: options.fetch ?? fetch,
      onRetry: options.onRetry,
    };
  }

  #machinePath(id: string, suffix = ''): string {
    if (!/^[a-zA-Z0-9_-]{1,64}$/.test(id))
      throw new NotFoundError('not_found', `machine id is malformed: ${JSON.stringify(id)}`);
    return `/apps/${this.app}/machines/${id}${suffix}`;
  }

  async #request<T>(
    method: string,
    path: string,
    o: RequestOptions = {},
  ): Promise<{ status: number; body: T }> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(o.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.#token}`,
      accept: 'application/json',
    };
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    if (o.leaseNonce) headers[LEASE_HEADER] = o.leaseNonce;

    for (let attempt = 0; ; attempt++) {
      o.signal?.throwIfAborted();
      const timeout = AbortSignal.timeout(this.#o.requestTimeoutMs);
      const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
      let res: Response;
      try {
        res = await this.#o.fetch(url, {
          method,
          headers,
          body: o.body === undefined ? undefined : JSON.stringify(o.body),
          signal,
        });
      } catch (e) {
        if (o.signal?.aborted) throw o.signal.reason;
        if (attempt >= this.#o.maxRetries || o.retry5xx === false)
          throw new PreviewError(
            'fly_unreachable',
            `Fly Machines API ${method} ${path}: ${(e as Error).message}`,
            {
              cause: e,
            },
          );
        await this.#backoff(method, path, 'network', attempt, undefined, o.signal);
        continue;
      }
      const text = await res.text();
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      if (res.ok || o.accept?.includes(res.status)) return { status: res.status, body: body as T };

      const retriable = res.status === 429 || (res.status >= 500 && o.retry5xx !== false);
      if (retriable && attempt < this.#o.maxRetries) {
        await this.#backoff(
          method,
          path,
          res.status,
          attempt,
          parseRetryAfter(res.headers.get('retry-after')),
          o.signal,
        );
        if (res.status >= 500 && o.beforeRetry) {
          const settled = await o.beforeRetry();
          if (settled !== undefined) return { status: 200, body: settled as T };
        }
        continue;
      }
      const err = body as { error?: string; status?: string } | undefined;
      const message = typeof err === 'object' && err?.error ? err.error : String(text || res.statusText);
      throw new FlyApiError(
        err?.status === 'insufficient_capacity' ? 'fly_insufficient_capacity' : `fly_http_${res.status}`,
        `Fly Machines API ${res.status}: ${method} ${path}: ${message}`,
        { status: res.status, flyStatus: err?.status },
      );
    }
  }

  async #backoff(
    method: string,
    path: string,
    status: number | 'network',
    attempt: number,
    retryAfterMs: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const delayMs = backoffDelay({
      attempt,
      baseMs: this.#o.retryBaseMs,
      capMs: this.#o.retryCapMs,
      random: this.#o.random,
      retryAfterMs,
    });
    this.#o.onRetry?.({ method, path, status, attempt, delayMs });
    await this.#o.sleep(delayMs, signal);
  }

  /**
   * Creates (and launches) a machine, trying `regions` in order and moving to the next one when
   * Fly answers `insufficient_capacity`. After a 5xx the create may have happened anyway, so before
   * retrying it looks the machine up by `metadata[adoptKey]` and adopts it if found.
   */
  async createMachine(
    params: {
      config: FlyMachineConfig;
      regions?: string[];
      name?: string;
      skipLaunch?: boolean;
      leaseTtlS?: number;
      /** Metadata key whose value identifies this create (e.g. `preview_id`). */
      adoptKey?: string;
    },
    o: Signalled = {},
  ): Promise<FlyMachine> {
    const regions = params.regions?.length ? params.regions : [undefined];
    const failures: string[] = [];
    for (const region of regions) {
      const body: Record<string, unknown> = { config: params.config };
      if (region) body['region'] = region;
      if (params.name) body['name'] = params.name;
      if (params.skipLaunch) body['skip_launch'] = true;
      if (params.leaseTtlS) body['lease_ttl'] = params.leaseTtlS;
      const adoptValue = params.adoptKey ? params.config.metadata?.[params.adoptKey] : undefined;
      try {
        const { body: m } = await this.#request<FlyMachine>('POST', `/apps/${this.app}/machines`, {
          body,
          signal: o.signal,
          beforeRetry:
            params.adoptKey && adoptValue
              ? async () => (await this.listMachines({ metadata: { [params.adoptKey!]: adoptValue } }, o))[0]
              : undefined,
        });
        return m;
      } catch (e) {
        if (isInsufficientCapacity(e)) {
          failures.push(`${region ?? '(default)'}: ${(e as Error).message}`);
          continue;
        }
        throw e;
      }
    }
    throw new CapacityError(
      'fly_insufficient_capacity',
      `no Fly region had capacity (${failures.join('; ')})`,
    );
  }

  async getMachine(id: string, o: Signalled = {}): Promise<FlyMachine | undefined> {
    const r = await this.#request<FlyMachine>('GET', this.#machinePath(id), {
      signal: o.signal,
      accept: [404],
    });
    return r.status === 404 ? undefined : r.body;
  }

  /**
   * Lists the app's machines, optionally filtered by region and metadata (sent as Fly's
   * `metadata.<key>` query parameters, and checked again here).
   */
  async listMachines(
    filter: { region?: string; metadata?: Record<string, string>; includeDeleted?: boolean } = {},
    o: Signalled = {},
  ): Promise<FlyMachine[]> {
    const query: Record<string, string | boolean | undefined> = {
      region: filter.region,
      include_deleted: filter.includeDeleted ? true : undefined,
    };
    for (const [k, v] of Object.entries(filter.metadata ?? {})) query[`metadata.${k}`] = v;
    const { body } = await this.#request<FlyMachine[]>('GET', `/apps/${this.app}/machines`, {
      query,
      signal: o.signal,
    });
    const list = Array.isArray(body) ? body : [];
    return list.filter((m) =>
      Object.entries(filter.metadata ?? {}).every(([k, v]) => m.config?.metadata?.[k] === v),
    );
  }

  /**
   * Blocks until the machine reaches `state` (Fly's `/wait`, at most 60 s per call; repeated until
   * `timeoutMs` or the signal ends it).
   */
  async waitForState(
    id: string,
    state: 'started' | 'stopped' | 'suspended' | 'destroyed',
    o: Signalled & { instanceId?: string; timeoutMs?: number } = {},
  ): Promise<void> {
    const deadline = Date.now() + (o.timeoutMs ?? 120_000);
    for (;;) {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0)
        throw new TimeoutError('timeout', `Fly machine ${id} did not reach state "${state}" in time`);
      const r = await this.#request<unknown>('GET', this.#machinePath(id, '/wait'), {
        query: { state, timeout: Math.min(60, left), instance_id: o.instanceId },
        signal: o.signal,
        accept: [408],
      });
      if (r.status !== 408) return;
    }
  }

  async startMachine(id: string, o: Signalled & { leaseNonce?: string } = {}): Promise<void> {
    await this.#request('POST', this.#machinePath(id, '/start'), {
      signal: o.signal,
      leaseNonce: o.leaseNonce,
    });
  }

  async stopMachine(
    id: string,
    o: Signalled & { leaseNonce?: string; signalName?: string; timeout?: string } = {},
  ) {
    const body: Record<string, string> = {};
    if (o.signalName) body['signal'] = o.signalName;
    if (o.timeout) body['timeout'] = o.timeout;
    await this.#request('POST', this.#machinePath(id, '/stop'), {
      body,
      signal: o.signal,
      leaseNonce: o.leaseNonce,
    });
  }

  /** Suspends a started machine (memory snapshot; `start` resumes it). */
  async suspendMachine(id: string, o: Signalled & { leaseNonce?: string } = {}): Promise<void> {
    await this.#request('POST', this.#machinePath(id, '/suspend'), {
      signal: o.signal,
      leaseNonce: o.leaseNonce,
    });
  }

  /** Destroys a machine (`force` by default). Returns false when it does not exist. */
  async destroyMachine(
    id: string,
    o: Signalled & { force?: boolean; leaseNonce?: string } = {},
  ): Promise<boolean> {
    const r = await this.#request('DELETE', this.#machinePath(id), {
      query: { force: o.force ?? true },
      signal: o.signal,
      leaseNonce: o.leaseNonce,
      accept: [404],
    });
    return r.status !== 404;
  }

  /** Acquires the machine's lease. Throws `ConflictError` when someone else holds it. */
  async acquireLease(
    id: string,
    o: Signalled & { ttlS?: number; description?: string; nonce?: string } = {},
  ): Promise<FlyLease> {
    const body: Record<string, unknown> = { ttl: o.ttlS ?? 30 };
    if (o.description) body['description'] = o.description;
    const r = await this.#request<FlyLease | { data?: FlyLease }>('POST', this.#machinePath(id, '/lease'), {
      body,
      signal: o.signal,
      leaseNonce: o.nonce, // refreshing one's own lease
      accept: [409],
    });
    if (r.status === 409)
      throw new ConflictError('fly_lease_conflict', `machine ${id} is leased by someone else`);
    // Fly's live API wraps the lease as {status, data}; the published document shows it bare.
    const lease = (r.body as { data?: FlyLease }).data ?? (r.body as FlyLease);
    if (!lease?.nonce) throw new PreviewError('fly_bad_response', `lease for ${id} has no nonce`);
    return lease;
  }

  async releaseLease(id: string, nonce: string, o: Signalled = {}): Promise<void> {
    await this.#request('DELETE', this.#machinePath(id, '/lease'), {
      signal: o.signal,
      leaseNonce: nonce,
      accept: [404],
    });
  }

  /** Runs `fn` while holding the machine's lease; always releases it. */
  async withLease<T>(
    id: string,
    fn: (nonce: string) => Promise<T>,
    o: Signalled & { ttlS?: number } = {},
  ): Promise<T> {
    const lease = await this.acquireLease(id, o);
    try {
      return await fn(lease.nonce);
    } finally {
      await this.releaseLease(id, lease.nonce).catch(() => {});
    }
  }
}
