import { PreviewError } from '@preview/tiers';
import { EventSourceParserStream } from 'eventsource-parser/stream';

/** What the CLI reads of a preview (the router's `Preview` schema, router/src/schemas.ts). */
export interface PreviewSummary {
  id: string;
  state: string;
  template: string;
  tier: 'browser' | 'docker' | 'fly' | null;
  placement: Record<string, unknown> | null;
  previewUrl: string | null;
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

/** One server-sent event of `GET /v1/previews/{id}/events`: its name and its parsed JSON data. */
export interface StreamEvent {
  event: string;
  data: Record<string, unknown>;
}

/**
 * An error answer of the router API (`{error:{code,message}}`), or a router that could not be
 * reached (`code` `unreachable`, `status` 0). `status` is the HTTP status.
 */
export class ApiError extends PreviewError {
  readonly status: number;
  constructor(code: string, message: string, options: { status: number; cause?: unknown }) {
    super(code, message, options);
    this.name = 'ApiError';
    this.status = options.status;
  }
}

/** Where the router is and who is asking. */
export interface RouterClientOptions {
  /** Base URL of the router, e.g. `http://127.0.0.1:8787` (what `npm start` prints). */
  url: string;
  /** A user token: the local access token `npm start` prints, a Supabase JWT or an API key. */
  token: string;
}

/**
 * A small client of the router's `/v1/previews` API for the CLI. Every method throws
 * {@link ApiError} with the API's code and message when the router answers an error, and
 * `unreachable` when it cannot be reached.
 */
export class RouterClient {
  readonly #base: string;
  readonly #token: string;

  constructor(o: RouterClientOptions) {
    this.#base = o.url.replace(/\/+$/, '');
    this.#token = o.token;
  }

  /** The caller's previews, newest first (all pages); ended ones too when `all`. */
  async list(o: { all?: boolean } = {}): Promise<PreviewSummary[]> {
    const out: PreviewSummary[] = [];
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams({ limit: '200' });
      if (o.all) q.set('all', 'true');
      if (cursor) q.set('cursor', cursor);
      const page = (await (await this.#request('GET', `/v1/previews?${q}`)).json()) as {
        previews: PreviewSummary[];
        nextCursor: string | null;
      };
      out.push(...page.previews);
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  }

  /** One preview. */
  async get(id: string): Promise<PreviewSummary> {
    return (await (
      await this.#request('GET', `/v1/previews/${encodeURIComponent(id)}`)
    ).json()) as PreviewSummary;
  }

  /** Stops and removes a preview (repeat-safe: an ended one answers the same). */
  async remove(id: string): Promise<void> {
    await this.#request('DELETE', `/v1/previews/${encodeURIComponent(id)}`);
  }

  /** The preview's database as SQL, streamed (`POST /v1/previews/{id}/database/export`). */
  async exportDatabase(id: string): Promise<ReadableStream<Uint8Array>> {
    const res = await this.#request('POST', `/v1/previews/${encodeURIComponent(id)}/database/export`);
    if (!res.body) throw new ApiError('empty_body', 'the export answered no body', { status: res.status });
    return res.body;
  }

  /**
   * The preview's events (`GET /v1/previews/{id}/events`): the current state and the recent status
   * and log events; with `follow`, then live ones until the preview ends, `signal` aborts or the
   * router closes the stream.
   * @default o.follow false
   */
  async *events(id: string, o: { follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<StreamEvent> {
    const path = `/v1/previews/${encodeURIComponent(id)}/events?follow=${o.follow === true}`;
    const res = await this.#request('GET', path, o.signal);
    if (!res.body) return;
    const events = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
    try {
      for await (const e of chunks(events)) {
        let data: Record<string, unknown>;
        try {
          data = JSON.parse(e.data) as Record<string, unknown>;
        } catch {
          data = { text: e.data };
        }
        yield { event: e.event ?? 'message', data };
      }
    } catch (e) {
      if (o.signal?.aborted) return;
      throw e;
    }
  }

  /**
   * Copies a project's database with its rows into `target.databaseUrl`
   * (`POST /v1/projects/{projectId}/database/deploy`, router README "Projects"): the router's report.
   * @throws ApiError with the router's code (`target_conflict`, `target_forbidden`, `not_found`…)
   */
  async deployDatabase(
    projectId: string,
    target: { databaseUrl: string; schema?: string; replace?: boolean; dropPreviewSchema?: boolean },
  ): Promise<Record<string, unknown>> {
    const res = await this.#request(
      'POST',
      `/v1/projects/${encodeURIComponent(projectId)}/database/deploy`,
      undefined,
      target,
    );
    return (await res.json()) as Record<string, unknown>;
  }

  /**
   * Runs `sql` in a project's database as its preview role, in one transaction; without `sql`, the
   * project's own seed (its seed.sql, else package.json `scripts.seed` in its running preview)
   * (`POST /v1/projects/{projectId}/database/seed`).
   * @throws ApiError `seed_failed` with PostgreSQL's message and position (or the script's output),
   *   `no_seed`, `preview_not_live`, `not_found`…
   */
  async seedDatabase(projectId: string, sql: string | undefined): Promise<Record<string, unknown>> {
    const res = await this.#request(
      'POST',
      `/v1/projects/${encodeURIComponent(projectId)}/database/seed`,
      undefined,
      sql === undefined ? { script: true } : { sql },
    );
    return (await res.json()) as Record<string, unknown>;
  }

  async #request(method: string, path: string, signal?: AbortSignal, json?: unknown): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(json === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(json === undefined ? {} : { body: JSON.stringify(json) }),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(
        'unreachable',
        `router at ${this.#base} not reachable (${cause?.code ?? cause?.message ?? (e as Error).message}): start it with \`preview up\` or pass --url / PREVIEW_URL`,
        { status: 0, cause: e },
      );
    }
    if (res.ok) return res;
    const text = await res.text();
    let body: { error?: { code?: unknown; message?: unknown } } | undefined;
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      body = undefined;
    }
    const code = typeof body?.error?.code === 'string' ? body.error.code : `http_${res.status}`;
    const message =
      typeof body?.error?.message === 'string' ? body.error.message : text.slice(0, 500) || res.statusText;
    throw new ApiError(code, message, { status: res.status });
  }
}

/** The chunks of a web stream (TypeScript's DOM typings lack its async iterator). */
export async function* chunks<T>(stream: ReadableStream<T>): AsyncGenerator<T> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}
