import {
  ConfigError,
  type FileOp,
  InvalidInputError,
  PreviewError,
  type ProjectFiles,
  pathProblem,
  type RuntimeErrorMessage,
} from '@preview/tiers';
import { type CreatePreviewInput, PreviewClient, type PreviewView } from '../client/preview-client.ts';
import type { SyncSession } from '../client/sync-session.ts';
import type { MountSession } from '../mount.ts';
import type { PreviewRuntime } from '../runtimes/types.ts';
import { type ErrorLocation, parseErrorLocation } from './error-location.ts';

/** Where a reported error came from. */
export type PreviewFaultSource =
  /** The dev server or the bundler could not build the project (a status `error`, a runtime `error`). */
  | 'build'
  /** The preview failed or could not be created (router state `failed`, a refused create). */
  | 'preview'
  /** The app threw in the preview frame (reported by the router's injected client). */
  | 'runtime'
  /** An edit was refused (`rejected` on the sync socket) or the sync session ended. */
  | 'sync';

/** An error to show over the preview: the message and, when it names one, the file and line. */
export interface PreviewFault extends ErrorLocation {
  source: PreviewFaultSource;
  /** The error's code when it has one (`build_failed`, `write_failed`, `preview_ended`, ...). */
  code?: string;
  /** The full text as reported. */
  detail: string;
  /** `Date.now()` when it arrived. */
  at: number;
}

/** What `usePreviewSession` exposes as React state (immutable: a new object on every change). */
export interface PreviewSessionSnapshot {
  /** The preview's id once the router created it. */
  previewId: string | null;
  /**
   * The router's session state (`queued`, `provisioning`, `starting`, `ready`, `suspended`,
   * `failed`, `stopping`, `ended`), `idle` before mount, `creating` while the create is under way.
   */
  state: string;
  /** The last status the preview reported (`installing`, `starting`, `ready`, `error`, ...). */
  status: { phase: string; message?: string } | null;
  /** The tier the router placed the preview on. */
  tier: 'browser' | 'docker' | 'fly' | null;
  /** Server tiers: the preview URL (with its short-lived token); null for the browser tier. */
  previewUrl: string | null;
  /** The router's view of the preview as last fetched. */
  preview: PreviewView | null;
  /** The last log lines (SSE `log` events and the sandbox's status log), oldest first, at most `maxLogLines`. */
  logs: readonly string[];
  /** The current build/runtime/preview error, or null. */
  error: PreviewFault | null;
  /**
   * The last update: `ms` edit → update sent, end to end; `kind` is the dev server's (`hmr`, `reload`,
   * ...) or `browser` (the browser tier: the edit applied to the runtime in this tab).
   */
  lastUpdate: { seq: number; ms: number; kind: string } | null;
  /** The sync socket's state (`connecting`, `open`, `reconnecting`, `closed`); `idle` before it opens. */
  syncState: string;
  /**
   * The project's files as this editor knows them: the initial ones plus `write`/`remove`/`rename`
   * (text, or `{content, encoding: 'base64'}` for a binary file given at the start).
   */
  files: Readonly<ProjectFiles>;
}

/** Options of `usePreviewSession` / `PreviewSessionStore`; read once, on mount. */
export interface PreviewSessionOptions {
  /** The project's files (paths relative to the project root; text, or base64 for binary files). */
  files: ProjectFiles;
  /** A template name (`vite-react`, `vite-vanilla`, ...); the router detects one when absent. */
  template?: string;
  /** The editor's app id: one live preview per user and project (opening again returns it). */
  projectId?: string;
  /** A `PreviewClient`; or give `routerUrl` and `token` and one is made. */
  client?: PreviewClient;
  /** The router's base URL (with `token`, when no `client` is given). */
  routerUrl?: string;
  /** Bearer token or a function returning a fresh one (with `routerUrl`). */
  token?: string | (() => string | Promise<string>);
  /** Which browser runtimes this tab offers; `serverOnly` asks for a server tier. @default {} (server tier) */
  runtimes?: CreatePreviewInput['client'];
  /** Ask for a server tier even when a browser runtime could run the project. @default false */
  serverOnly?: boolean;
  /** Log lines kept (older ones dropped). @default 500 */
  maxLogLines?: number;
  /**
   * Edits are gathered this long before a batch goes out; several writes to one path in that window
   * are sent as one (the sync session's `coalesceMs`). @default 0 (until the current task ends)
   */
  coalesceMs?: number;
  /** Stop the preview on unmount. With `projectId` you may prefer to keep it (it idles out). @default true */
  stopOnUnmount?: boolean;
}

const IDLE: PreviewSessionSnapshot = Object.freeze({
  previewId: null,
  state: 'idle',
  status: null,
  tier: null,
  previewUrl: null,
  preview: null,
  logs: [],
  error: null,
  lastUpdate: null,
  syncState: 'idle',
  files: {},
});

interface EventSourceLike {
  addEventListener(type: string, listener: (e: { data: string }) => void): void;
  close(): void;
  readonly readyState: number;
  onerror: ((e: unknown) => void) | null;
}
type EventSourceCtor = new (url: string) => EventSourceLike;

const randomKey = (): string =>
  globalThis.crypto?.randomUUID?.() ?? `k-${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;

/**
 * One preview's life, without React: creates it (`start`), follows its SSE events and its sync
 * socket, keeps a bounded log, the current error and the files, and stops it (`dispose`).
 * `usePreviewSession` wraps it; `subscribe`/`getSnapshot` fit `useSyncExternalStore`.
 *
 * `retain`/`release` make it safe under React StrictMode: a release is carried out on the next
 * macrotask unless a retain comes first (StrictMode's simulated unmount + remount), so a re-mount
 * neither creates a second preview nor stops the first.
 *
 * @throws ConfigError (constructor) when neither `client` nor `routerUrl` + `token` are given
 */
export class PreviewSessionStore {
  readonly client: PreviewClient;
  readonly #o: PreviewSessionOptions;
  #snap: PreviewSessionSnapshot;
  readonly #listeners = new Set<() => void>();
  #started = false;
  #disposed = false;
  #releaseTimer: ReturnType<typeof setTimeout> | undefined;
  #events: EventSourceLike | undefined;
  #sync: SyncSession | undefined;
  /** Edits made before the sync session opened, sent in order once it does. */
  #pending: FileOp[] = [];
  #runtime: PreviewRuntime | undefined;
  #runtimeOff: (() => void) | undefined;
  #runtimeErrors = 0;
  #stopped: Promise<void> | undefined;
  #starting: Promise<void> = Promise.resolve();

  constructor(options: PreviewSessionOptions) {
    if (!options || typeof options.files !== 'object' || options.files === null)
      throw new ConfigError('invalid_config', 'files: must be an object of path → content');
    if (options.client) this.client = options.client;
    else if (options.routerUrl && options.token)
      this.client = new PreviewClient({ baseUrl: options.routerUrl, token: options.token });
    else throw new ConfigError('invalid_config', 'client: pass a PreviewClient, or routerUrl and token');
    this.#o = options;
    this.#snap = { ...IDLE, files: { ...options.files } };
  }

  /** For `useSyncExternalStore`. */
  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** For `useSyncExternalStore`: the same object until something changes. */
  getSnapshot = (): PreviewSessionSnapshot => this.#snap;

  #set(patch: Partial<PreviewSessionSnapshot>): void {
    this.#snap = { ...this.#snap, ...patch };
    for (const l of this.#listeners) l();
  }

  #log(lines: readonly string[]): void {
    if (!lines.length) return;
    const max = this.#o.maxLogLines ?? 500;
    this.#set({ logs: [...this.#snap.logs, ...lines].slice(-max) });
  }

  #fault(source: PreviewFaultSource, text: string, code?: string): void {
    this.#set({
      error: { source, detail: text, at: Date.now(), ...(code ? { code } : {}), ...parseErrorLocation(text) },
    });
  }

  #clearFault(source: PreviewFaultSource): void {
    if (this.#snap.error?.source === source) this.#set({ error: null });
  }

  /** Mount (or StrictMode's re-mount): cancels a pending release; starts the preview the first time. */
  retain(): void {
    clearTimeout(this.#releaseTimer);
    this.#releaseTimer = undefined;
    if (!this.#started && !this.#disposed) {
      this.#started = true;
      this.#starting = this.#start();
    }
  }

  /** Unmount: disposes on the next macrotask unless `retain` is called first. */
  release(): void {
    clearTimeout(this.#releaseTimer);
    this.#releaseTimer = setTimeout(() => void this.dispose(), 0);
  }

  async #start(): Promise<void> {
    this.#set({ state: 'creating' });
    let view: PreviewView;
    try {
      view = await this.client.create(
        {
          files: this.#snap.files,
          ...(this.#o.template ? { template: this.#o.template } : {}),
          ...(this.#o.projectId ? { projectId: this.#o.projectId } : {}),
          ...(this.#o.runtimes ? { client: this.#o.runtimes } : {}),
          ...(this.#o.serverOnly ? { serverOnly: true } : {}),
        },
        { idempotencyKey: randomKey() },
      );
    } catch (e) {
      if (this.#disposed) return;
      this.#set({ state: 'failed' });
      this.#fault('preview', (e as Error).message, (e as { code?: string }).code);
      return;
    }
    this.#adopt(view);
    if (this.#disposed) return; // unmounted while the router was creating it: dispose() stops it
    // A create that failed (no tier could run it): its error stays; nothing to follow or sync.
    if (isOver(view.state)) return;
    this.#openEvents(view.id);
    this.#openSync(view);
  }

  #adopt(view: PreviewView): void {
    this.#set({
      previewId: view.id,
      preview: view,
      state: view.state,
      tier: view.tier,
      previewUrl: view.previewUrl,
    });
    if (view.state === 'failed' && view.error) this.#fault('preview', view.error);
  }

  /** Follows `GET /v1/previews/:id/events`; reconnects with a fresh token while the preview lives. */
  #openEvents(id: string): void {
    const ES = (globalThis as { EventSource?: EventSourceCtor }).EventSource;
    if (!ES) return; // Node without EventSource: state comes from the sync socket and refresh().
    const connect = async () => {
      if (this.#disposed) return;
      const es = new ES(await this.client.eventsUrl(id));
      if (this.#disposed) return es.close();
      this.#events = es;
      const on = (type: string, fn: (d: Record<string, unknown>) => void) =>
        es.addEventListener(type, (e) => {
          try {
            fn(JSON.parse(e.data) as Record<string, unknown>);
          } catch {
            /* a malformed event is dropped */
          }
        });
      on('state', (d) => this.#onState(d));
      on('status', (d) => this.#onStatus(d));
      on('log', (d) => this.#log(Array.isArray(d['lines']) ? (d['lines'] as string[]) : []));
      es.onerror = () => {
        // EventSource retries by itself unless the server refused (CLOSED): then with a new token.
        if (es.readyState !== 2 || this.#disposed || isOver(this.#snap.state)) return;
        es.close();
        setTimeout(() => void connect(), 1000);
      };
    };
    void connect();
  }

  #onState(d: Record<string, unknown>): void {
    const state = String(d['state'] ?? this.#snap.state);
    const tier = (d['tier'] as PreviewSessionSnapshot['tier'] | undefined) ?? this.#snap.tier;
    this.#set({ state, tier });
    if (state === 'failed') this.#fault('preview', String(d['error'] ?? 'the preview failed'));
    if (isOver(state)) this.#events?.close();
    // A new previewUrl (fresh token) once a server preview is ready.
    if (state === 'ready' && tier !== 'browser' && this.#snap.previewId) void this.refresh();
  }

  #onStatus(d: Record<string, unknown>): void {
    const phase = String(d['phase'] ?? '');
    const message = typeof d['message'] === 'string' ? d['message'] : undefined;
    this.#set({ status: { phase, ...(message ? { message } : {}) } });
    if (Array.isArray(d['log'])) this.#log(d['log'] as string[]);
    if (phase === 'error') {
      const log = Array.isArray(d['log']) ? (d['log'] as string[]) : [];
      this.#fault('build', message || log.slice(-5).join('\n') || 'the preview reported an error');
    } else if (phase === 'ready') this.#clearFault('build');
  }

  #openSync(view: PreviewView): void {
    const local = view.tier === 'browser';
    const sync = this.client.sync(view.id, {
      ...(this.#o.coalesceMs !== undefined ? { coalesceMs: this.#o.coalesceMs } : {}),
      ...(local ? { applyLocally: (ops: FileOp[]) => this.#applyLocally(ops) } : {}),
    });
    this.#sync = sync;
    sync.on('state', (e) => this.#set({ syncState: e.state }));
    if (local)
      sync.on('applied', (e) => {
        if (this.#snap.tier === 'browser')
          this.#set({ lastUpdate: { seq: e.seq, ms: e.ms, kind: 'browser' } });
      });
    sync.on('status', (s) => this.#onStatus(s as unknown as Record<string, unknown>));
    sync.on('hmr', (e) => {
      this.#set({ lastUpdate: { seq: e.seq, ms: e.ms, kind: e.kind } });
      this.#clearFault('sync');
    });
    sync.on('rejected', (e) => this.#fault('sync', e.error.message, e.error.code));
    sync.on('error', (e) => {
      const code = e.error.code;
      if (code === 'apply_failed') return; // the runtime's own `error` event carries it
      // The session ended for good (SyncSession's fatal close codes): about the preview, not an edit.
      const fatal = ['unauthorized', 'forbidden', 'not_found', 'preview_ended'].includes(code);
      // A preview that failed says why itself (placement, its node): "preview … is failed" adds nothing.
      if (code === 'preview_ended' && this.#snap.error?.source === 'preview') return;
      this.#fault(fatal ? 'preview' : 'sync', e.error.message, code);
    });
    try {
      for (const op of this.#pending.splice(0)) this.#send(op);
    } catch (e) {
      this.#fault('sync', (e as Error).message, (e as { code?: string }).code);
    }
  }

  /** Browser tier: the edits go into the runtime running in this tab (see `attachRuntime`). */
  async #applyLocally(ops: FileOp[]): Promise<void> {
    const rt = this.#runtime;
    if (!rt) return; // not mounted yet: the runtime mounts with `files`, which already has them
    const before = this.#runtimeErrors;
    for (const op of ops) {
      if (op.op === 'put')
        await rt.writeFile(
          op.path,
          op.encoding === 'base64' ? Uint8Array.from(atob(op.content), (c) => c.charCodeAt(0)) : op.content,
        );
      // A delete stays in the router's files; the running tab keeps the file until it remounts.
    }
    if (this.#runtimeErrors === before) this.#clearFault('build');
  }

  #send(op: FileOp): void {
    if (!this.#sync) {
      this.#pending.push(op);
      return;
    }
    if (op.op === 'put') this.#sync.write(op.path, op.content);
    else if (op.op === 'delete') this.#sync.delete(op.path);
    else if (op.op === 'rename') this.#sync.rename(op.from, op.to);
  }

  /** The sync session's path rule, checked before an edit is queued for a socket not yet open. */
  #checkPath(path: string): void {
    const p = pathProblem(path);
    if (p)
      throw new InvalidInputError(
        'invalid_path',
        `path: ${p.message} (rule ${p.rule}, got ${JSON.stringify(path)})`,
      );
  }

  /**
   * Writes a file: kept in `files` and sent through the sync socket (queued until it opens).
   * After `dispose` it does nothing.
   * @throws InvalidInputError `invalid_path` (the shared path rules of `@preview/tiers`), or from the
   *   sync session `too_large` (a file over `LIMITS.fileBytes`); nothing is kept then
   */
  write = (path: string, content: string): void => {
    if (this.#disposed) return;
    this.#checkPath(path);
    this.#send({ op: 'put', path, content, encoding: 'utf8' });
    this.#clearFault('runtime'); // the app runs again with the edit; it reports again if it throws
    this.#set({ files: { ...this.#snap.files, [path]: content } });
  };

  /** Deletes a file (as `write`). */
  remove = (path: string): void => {
    if (this.#disposed) return;
    this.#checkPath(path);
    this.#send({ op: 'delete', path });
    this.#clearFault('runtime');
    const files = { ...this.#snap.files };
    delete files[path];
    this.#set({ files });
  };

  /**
   * Renames a file (a `rename` op through the sync socket; `files` follows). After `dispose` it does
   * nothing.
   * @throws InvalidInputError `invalid_path` (either path; the shared rules of `@preview/tiers`), or
   *   `not_found` when this session knows no file `from`, or `exists` when `to` is already a file;
   *   nothing is sent then
   */
  rename = (from: string, to: string): void => {
    if (this.#disposed) return;
    this.#checkPath(from);
    this.#checkPath(to);
    const files = { ...this.#snap.files };
    if (!(from in files)) throw new InvalidInputError('not_found', `from: no file ${JSON.stringify(from)}`);
    if (to in files) throw new InvalidInputError('exists', `to: ${JSON.stringify(to)} is already a file`);
    this.#send({ op: 'rename', from, to });
    this.#clearFault('runtime');
    files[to] = files[from]!;
    delete files[from];
    this.#set({ files });
  };

  /**
   * Suspends the preview (`POST /v1/previews/:id/suspend`) and takes the router's answer as state.
   * @throws the client's typed errors (ConflictError when it cannot be suspended, NotFoundError)
   */
  async suspend(): Promise<void> {
    const id = this.#liveId('suspend');
    this.#adopt(await this.client.suspend(id));
  }

  /** Resumes a suspended preview (`POST /v1/previews/:id/resume`). @throws as `suspend` */
  async resume(): Promise<void> {
    const id = this.#liveId('resume');
    this.#adopt(await this.client.resume(id));
  }

  /**
   * Moves a browser-tier preview to a server tier under the same id (`POST /v1/previews/:id/placement`);
   * `PreviewPanel` then shows the server tier's URL. @throws as `PreviewClient.movePlacement`
   */
  async moveToServer(reason: string, tier: 'docker' | 'fly' = 'docker'): Promise<void> {
    const id = this.#liveId('move');
    this.#adopt(await this.client.movePlacement(id, { tier, reason }));
  }

  /**
   * Stops the preview now (`DELETE /v1/previews/:id`) and closes the sync socket; the state becomes
   * `ended` (the panel takes the frame down). The store stays usable for reading.
   */
  async stop(): Promise<void> {
    const id = this.#liveId('stop');
    await this.client.stop(id);
    this.#sync?.close();
    this.#sync = undefined;
    this.#set({ state: 'ended' });
    this.#events?.close();
  }

  #liveId(action: string): string {
    const id = this.#snap.previewId;
    if (!id || this.#disposed)
      throw new PreviewError('no_preview', `${action}: there is no preview yet (or it was disposed)`);
    return id;
  }

  /**
   * `PreviewPanel` calls this once the preview is shown: `runtime` (browser tier) takes the edits
   * and reports build errors; `session` is what is shown (a fallback moves it to a server tier).
   */
  attachRuntime(runtime: PreviewRuntime | undefined, session: MountSession): void {
    this.#runtimeOff?.();
    this.#runtime = runtime;
    this.#runtimeOff = runtime?.on('error', (e) => {
      this.#runtimeErrors++;
      this.#fault('build', e.message, (e as { code?: string }).code);
    });
    if (session.tier !== this.#snap.tier) this.#set({ tier: session.tier, previewUrl: session.previewUrl });
  }

  /** Fetches the preview again (fresh `previewUrl` token, state). */
  async refresh(): Promise<void> {
    const id = this.#snap.previewId;
    if (!id || this.#disposed) return;
    const view = await this.client.get(id).catch(() => undefined);
    if (view && !this.#disposed) this.#set({ preview: view, previewUrl: view.previewUrl, tier: view.tier });
  }

  /**
   * Shows an error that happened outside the store (e.g. `PreviewPanel` could not mount the preview).
   * `text` is parsed for a file and line like every other error.
   */
  report(source: PreviewFaultSource, text: string, code?: string): void {
    if (!this.#disposed) this.#fault(source, text, code);
  }

  /**
   * An error the app threw in the preview frame (`RuntimeErrorMessage`, posted by the router's
   * injected client; `PreviewPanel` listens for it). `file` URLs become project paths
   * (`http://<id>.preview.host/src/App.jsx?t=1` → `src/App.jsx`); without a line, the stack is read.
   */
  reportRuntimeError(m: Pick<RuntimeErrorMessage, 'message' | 'file' | 'line' | 'column' | 'stack'>): void {
    if (this.#disposed) return;
    const detail = [String(m.message ?? 'error'), m.stack ? String(m.stack) : ''].filter(Boolean).join('\n');
    let file: string | undefined;
    try {
      file = m.file
        ? decodeURIComponent(new URL(m.file).pathname).replace(/^\/+/, '') || undefined
        : undefined;
    } catch {
      file = m.file;
    }
    const fromStack = parseErrorLocation(detail);
    const line = Number.isInteger(m.line) && m.line! > 0 ? m.line : undefined;
    const column = Number.isInteger(m.column) && m.column! > 0 ? m.column : undefined;
    this.#set({
      error: {
        source: 'runtime',
        detail,
        at: Date.now(),
        message: String(m.message ?? 'error'),
        ...(file && line
          ? { file, line, ...(column ? { column } : {}) }
          : fromStack.file
            ? { file: fromStack.file, line: fromStack.line, column: fromStack.column }
            : {}),
      },
    });
  }

  /** Forgets the current error (e.g. the user dismissed the overlay). */
  dismissError(): void {
    this.#set({ error: null });
  }

  /**
   * Closes the events and the sync socket and stops the preview (`DELETE /v1/previews/:id`, unless
   * `stopOnUnmount: false`). Repeat-safe; resolves when the router answered.
   */
  dispose(): Promise<void> {
    if (this.#stopped) return this.#stopped;
    this.#disposed = true;
    clearTimeout(this.#releaseTimer);
    this.#events?.close();
    this.#runtimeOff?.();
    this.#stopped = (async () => {
      // A create under way finishes first: the preview it makes is ours to stop.
      await this.#starting;
      const sync = this.#sync;
      const id = this.#snap.previewId;
      // Edits already typed reach the router before the preview goes (bounded wait).
      if (sync)
        await Promise.race([sync.whenPersisted().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
      sync?.close();
      if (id && this.#o.stopOnUnmount !== false) await this.client.stop(id).catch(() => {});
    })();
    return this.#stopped;
  }
}

const isOver = (state: string) => state === 'ended' || state === 'failed';
