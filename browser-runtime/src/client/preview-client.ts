import { ConfigError, errorFromHttp, NotFoundError, type ProjectFiles, TimeoutError } from '@preview/tiers';
import pRetry from 'p-retry';
import { type PreviewEventsOptions, type PreviewStreamEvent, previewEvents } from './preview-events.ts';
import { SyncSession, type SyncSessionOptions } from './sync-session.ts';
import { type TransportFactory, type WebSocketConstructor, webSocketTransport } from './transport.ts';

/** A preview as the router's REST API returns it. */
export interface PreviewView {
  id: string;
  state: string;
  template: string;
  tier: 'browser' | 'docker' | 'fly' | null;
  placement: Record<string, unknown> | null;
  previewUrl: string | null;
  error: string | null;
  lastSeq: number;
  /** The editor's app id the preview belongs to, or null. */
  projectId?: string | null;
  [key: string]: unknown;
}

export interface CreatePreviewInput {
  files: ProjectFiles;
  template?: string;
  client?: { webcontainer?: boolean; bundler?: boolean };
  serverOnly?: boolean;
  /**
   * The editor's app id (1–128 letters, digits, `.`, `_`, `-`, starting with a letter or digit): one
   * live preview per user and project. Creating again returns the live one (woken if suspended);
   * after it ended, a new one starts from the project's stored files and keeps its database.
   */
  projectId?: string;
}

export interface PreviewClientOptions {
  /** The router's base URL, e.g. `https://router.example.com`. */
  baseUrl: string;
  /** Bearer token (Supabase JWT or API key), or a function returning a fresh one. */
  token: string | (() => string | Promise<string>);
  /** Defaults to `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Defaults to `globalThis.WebSocket`; pass `ws`'s `WebSocket` on Node 20. */
  WebSocket?: WebSocketConstructor;
  /** Per-request timeout for REST calls (each attempt). Default 30 s. */
  timeoutMs?: number;
  /**
   * How many times a repeat-safe REST call (a GET, a DELETE, a create with an idempotency key, a
   * placement move, a resume, a realtime bridge) is sent again after a network failure: no answer at
   * all, as when a connection is reset or Chromium aborts requests in flight on a network change
   * (`ERR_NETWORK_CHANGED`, a host's interfaces changing). Waits 200 ms, then doubling. An answer,
   * even an error status, and a timeout are never retried. @default 4
   */
  networkRetries?: number;
}

/**
 * The editor's handle on the router: create / get / stop previews, and the live sync session.
 * Runs in browsers and in Node ≥ 20.
 *
 * @example
 * const client = new PreviewClient({ baseUrl: 'https://router.example.com', token: jwt });
 * const preview = await client.create({ files: { 'index.html': '<h1>hi</h1>' } });
 * const sync = client.sync(preview.id);
 * sync.write('index.html', '<h1>hello</h1>');
 * await sync.whenPersisted();
 */
export class PreviewClient {
  readonly #base: URL;
  readonly #o: PreviewClientOptions;
  /** Open sync sessions by preview id: `importMap` waits for their writes to be persisted. */
  readonly #sessions = new Map<string, Set<SyncSession>>();
  #runtimeHost: Promise<string | undefined> | undefined;

  constructor(options: PreviewClientOptions) {
    let base: URL;
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw new ConfigError(
        'invalid_config',
        `baseUrl: must be an absolute URL (got ${JSON.stringify(options.baseUrl)})`,
      );
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:')
      throw new ConfigError('invalid_config', 'baseUrl: must be http(s)');
    if (typeof options.token !== 'string' && typeof options.token !== 'function')
      throw new ConfigError('invalid_config', 'token: must be a string or a function');
    this.#base = base;
    this.#o = options;
  }

  async #token(): Promise<string> {
    return typeof this.#o.token === 'function' ? await this.#o.token() : this.#o.token;
  }

  /**
   * One REST call. `repeatSafe` (GET and DELETE unless told otherwise): the router's answer does not
   * change if the request arrives twice, so a network failure is retried (`networkRetries`).
   */
  async #request<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
    repeatSafe = method === 'GET' || method === 'DELETE',
  ): Promise<T> {
    const attempt = () => this.#send<T>(method, path, body, headers, signal);
    const retries = this.#o.networkRetries ?? 4;
    if (!repeatSafe || retries === 0) return await attempt();
    // p-retry hands shouldRetry only the TypeErrors fetch throws for a network failure
    // (is-network-error); every other error, an HTTP answer's included, ends the call.
    return await pRetry(attempt, {
      retries,
      minTimeout: 200,
      factor: 2,
      ...(signal ? { signal } : {}),
      shouldRetry: ({ error }) => error instanceof TypeError,
    });
  }

  async #send<T>(
    method: string,
    path: string,
    body: unknown,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const f = this.#o.fetch ?? globalThis.fetch;
    const timeout = AbortSignal.timeout(this.#o.timeoutMs ?? 30_000);
    const res = await f(new URL(path, this.#base), {
      method,
      headers: {
        authorization: `Bearer ${await this.#token()}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    }).catch((e: unknown) => {
      if ((e as Error)?.name === 'TimeoutError')
        throw new TimeoutError('timeout', `${method} ${path}: no answer in time`, { cause: e });
      throw e;
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) throw errorFromHttp(res.status, json, 'router', res.headers.get('retry-after'));
    return json as T;
  }

  /**
   * `POST /v1/previews`. With `idempotencyKey`, a retry returns the same preview. With
   * `input.projectId`, the project's live preview if it has one (woken when suspended).
   */
  create(
    input: CreatePreviewInput,
    options: { idempotencyKey?: string; signal?: AbortSignal } = {},
  ): Promise<PreviewView> {
    return this.#request<PreviewView>(
      'POST',
      '/v1/previews',
      input,
      options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {},
      options.signal,
      !!options.idempotencyKey,
    );
  }

  /** `GET /v1/previews/:id`. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<PreviewView> {
    return this.#request<PreviewView>(
      'GET',
      `/v1/previews/${encodeURIComponent(id)}`,
      undefined,
      {},
      options.signal,
    );
  }

  /**
   * `GET /v1/projects/:projectId/preview`: the caller's live preview of a project.
   * @throws NotFoundError when the project has no live preview (or is another user's)
   */
  projectPreview(projectId: string, options: { signal?: AbortSignal } = {}): Promise<PreviewView> {
    return this.#request<PreviewView>(
      'GET',
      `/v1/projects/${encodeURIComponent(projectId)}/preview`,
      undefined,
      {},
      options.signal,
    );
  }

  /**
   * `POST /v1/previews/:id/resume`: wakes a suspended preview (`suspended → starting`; follow it to
   * `ready` over the preview's events). A preview in any other live state is returned as it is; an
   * edit or a sync connect wakes a suspended preview too.
   * @throws NotFoundError (unknown, or another user's), ConflictError `preview_ended` (failed, ended or stopping)
   */
  resume(id: string, options: { signal?: AbortSignal } = {}): Promise<PreviewView> {
    return this.#request<PreviewView>(
      'POST',
      `/v1/previews/${encodeURIComponent(id)}/resume`,
      undefined,
      {},
      options.signal,
      true,
    );
  }

  /**
   * `POST /v1/previews/:id/suspend`: suspends a ready preview (the router's idle job does it after
   * `IDLE_SUSPEND_MS`).
   * @throws NotFoundError, ConflictError `invalid_transition` (not ready)
   */
  suspend(id: string, options: { signal?: AbortSignal } = {}): Promise<PreviewView> {
    return this.#request<PreviewView>(
      'POST',
      `/v1/previews/${encodeURIComponent(id)}/suspend`,
      undefined,
      {},
      options.signal,
    );
  }

  /**
   * `POST /v1/previews/:id/placement`: moves a browser-tier preview to a server tier under the same
   * id (files, edits and database kept; `reason` recorded in its `reasons`). What `mountPreview`'s
   * fallback calls (`options.router`). Repeat-safe: a preview already on `tier` is returned as is.
   * @throws InvalidInputError (tier not docker/fly or not run by this router; reason not 1–500 chars),
   *   ConflictError (not a live browser preview), NotFoundError
   */
  movePlacement(
    id: string,
    body: { tier: 'docker' | 'fly'; reason: string },
    options: { signal?: AbortSignal } = {},
  ): Promise<PreviewView> {
    return this.#request<PreviewView>(
      'POST',
      `/v1/previews/${encodeURIComponent(id)}/placement`,
      { tier: body.tier, reason: body.reason.slice(0, 500) },
      {},
      options.signal,
      true,
    );
  }

  /**
   * `GET /v1/previews/:id/files`: the project as the router stored it (every persisted batch), to
   * restore an editor or a browser-tier runtime after a reload.
   * @throws NotFoundError (not the caller's preview)
   */
  files(id: string, options: { signal?: AbortSignal } = {}): Promise<ProjectFiles> {
    return this.#request<ProjectFiles>(
      'GET',
      `/v1/previews/${encodeURIComponent(id)}/files`,
      undefined,
      {},
      options.signal,
    );
  }

  /**
   * `GET /v1/runtime-host`: the base URL of the router's runtime origin (`bundler.<PREVIEW_DOMAIN>`),
   * where `mountPreview` runs the bundler (RemoteBundlerRuntime) so the app is never on the editor's
   * origin; undefined when this router does not host the runtime (404). Asked once per client.
   */
  runtimeHost(): Promise<string | undefined> {
    this.#runtimeHost ??= this.#request<{ url: string }>('GET', '/v1/runtime-host').then(
      (r) => r.url,
      (e: unknown) => {
        if (e instanceof NotFoundError) return undefined;
        this.#runtimeHost = undefined;
        throw e;
      },
    );
    return this.#runtimeHost;
  }

  /**
   * `GET /v1/previews/:id/importmap`: the bundler runtime's import map of the project's
   * `package.json` dependencies (`name` and `name/` → the router's package cache, `/__pkg/...`).
   * The router reads the stored package.json, so this first waits until every write of this
   * client's open sync sessions of `id` is persisted (a dependency just added is in the map).
   * @throws ConflictError `browser_incompatible` naming the package that cannot run in a browser
   *   (the router has moved the preview to a server tier), NotFoundError, InvalidInputError
   *   `invalid_package_json`
   */
  async importMap(
    id: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ imports: Record<string, string> }> {
    await Promise.all([...(this.#sessions.get(id) ?? [])].map((s) => s.whenPersisted().catch(() => {})));
    return await this.#request<{ imports: Record<string, string> }>(
      'GET',
      `/v1/previews/${encodeURIComponent(id)}/importmap`,
      undefined,
      {},
      options.signal,
    );
  }

  /** `DELETE /v1/previews/:id` (repeat-safe on the router). */
  async stop(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#request<unknown>(
      'DELETE',
      `/v1/previews/${encodeURIComponent(id)}`,
      undefined,
      {},
      options.signal,
    );
  }

  /**
   * `POST /v1/previews/:id/realtime`: makes sure a router replica bridges the preview's Supabase
   * Realtime topic to its sync hub. `realtimeTransport({ router: client })` calls it on every connect.
   * With `editorId`, the answer carries the short-lived `editorToken` (bound to the preview, the user
   * and that editor id) that the editor's hello must show the bridge.
   */
  realtime(
    id: string,
    options: { signal?: AbortSignal; editorId?: string } = {},
  ): Promise<{ topic: string; editorToken?: string; expiresAt?: string }> {
    return this.#request<{ topic: string; editorToken?: string; expiresAt?: string }>(
      'POST',
      `/v1/previews/${encodeURIComponent(id)}/realtime`,
      options.editorId !== undefined ? { editorId: options.editorId } : undefined,
      {},
      options.signal,
      true,
    );
  }

  /**
   * The preview's events (`GET /v1/previews/:id/events`, SSE): a `state` snapshot, the recent
   * `state` / `status` / `log` events, then live ones, as an async iterable. A lost connection (the
   * router replica gone, a 5xx) reconnects with backoff and `Last-Event-ID`, so the editor learns of
   * `migrating` and `ready` across a failover without missing a stored event.
   * Ends after the state `ended`, on `options.signal`, or when the loop stops.
   * @throws the typed error of a 4xx (NotFoundError for an unknown or another user's preview, ...)
   * @example
   * for await (const e of client.events(id, { signal })) if (e.type === 'state') show(e.state);
   */
  events(id: string, options: PreviewEventsOptions = {}): AsyncIterable<PreviewStreamEvent> {
    return previewEvents(
      {
        url: new URL(`/v1/previews/${encodeURIComponent(id)}/events`, this.#base),
        token: () => this.#token(),
        fetch: this.#o.fetch ?? globalThis.fetch.bind(globalThis),
      },
      options,
    );
  }

  /** The router's sync socket URL for a preview (the token rides in `access_token`: browsers cannot set headers). */
  async syncUrl(id: string): Promise<string> {
    const u = new URL(`/v1/previews/${encodeURIComponent(id)}/sync`, this.#base);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('access_token', await this.#token());
    return u.toString();
  }

  /**
   * The URL of a preview's server-sent events (`GET /v1/previews/:id/events`: `state`, `status` and
   * `log` events), for `EventSource`; the token rides in `access_token` as EventSource cannot set
   * headers. Build it again for each connection so that a token function can refresh the token.
   */
  async eventsUrl(id: string): Promise<string> {
    const u = new URL(`/v1/previews/${encodeURIComponent(id)}/events`, this.#base);
    u.searchParams.set('access_token', await this.#token());
    return u.toString();
  }

  /**
   * Opens the live sync session of a preview. `transport` replaces the router socket (e.g. the
   * Supabase Realtime transport).
   */
  sync(
    id: string,
    options: Omit<SyncSessionOptions, 'transport'> & { transport?: TransportFactory } = {},
  ): SyncSession {
    let transport = options.transport;
    if (!transport) {
      const WS = this.#o.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
      if (!WS)
        throw new ConfigError(
          'invalid_config',
          'WebSocket: no global WebSocket here (Node 20): pass the `ws` package’s WebSocket',
        );
      // The URL is built per connection so that a token function can refresh the token.
      transport = (h) => {
        let inner: ReturnType<TransportFactory> | undefined;
        let closed: [number, string] | undefined;
        void this.syncUrl(id).then(
          (url) => {
            inner = webSocketTransport(url, WS)(h);
            if (closed) inner.close(...closed);
          },
          () => h.onClose(4000, 'token unavailable'),
        );
        return {
          get bufferedAmount() {
            return inner?.bufferedAmount ?? 0;
          },
          send: (f) => inner?.send(f),
          close: (code = 1000, reason = 'client closed') => {
            if (inner) inner.close(code, reason);
            else closed = [code, reason];
          },
        };
      };
    }
    const session = new SyncSession({ ...options, transport });
    const open = this.#sessions.get(id) ?? new Set<SyncSession>();
    this.#sessions.set(id, open.add(session));
    session.on('state', ({ state }) => {
      if (state !== 'closed') return;
      open.delete(session);
      if (open.size === 0 && this.#sessions.get(id) === open) this.#sessions.delete(id);
    });
    return session;
  }
}
