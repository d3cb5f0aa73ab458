/**
 * The chaos bench's API client: what an editor behind a load balancer does while faults hit the
 * service. A request whose connection broke (the router replica behind the balancer was killed) is
 * sent again at once, through the balancer to a live replica, and counted as a failover; 5xx and 429
 * are retried after `Retry-After` (or a capped exponential backoff) until the cycle's deadline. A
 * 409 is never retried blindly: a preview that is `failed`, `ended` or `stopping` gives the cycle up
 * (`PreviewGone`, with the preview's own reason), and an edit whose seq an earlier attempt already
 * took (its answer was lost with the replica) is not sent again.
 */
import { randomBytes } from 'node:crypto';

/** A non-2xx answer: status, body, the error code of `{error:{code}}` and `Retry-After` (ms). */
export class HttpFailure extends Error {
  readonly code: string | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(
    readonly status: number,
    readonly body: string,
    retryAfter: string | null = null,
  ) {
    super(`HTTP ${status}: ${body.slice(0, 300)}`);
    this.name = 'HttpFailure';
    let code: unknown;
    try {
      code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    } catch {
      // not JSON
    }
    this.code = typeof code === 'string' ? code : undefined;
    const s = Number(retryAfter ?? Number.NaN);
    this.retryAfterMs = Number.isFinite(s) && s >= 0 ? s * 1000 : undefined;
  }
}

/** The cycle's preview is `failed`, `ended` or `stopping`: nothing more can be done with it. */
export class PreviewGone extends Error {
  constructor(
    readonly id: string,
    readonly state: string,
    /** The preview's `error` (why it failed), or the state. */
    readonly reason: string,
  ) {
    super(`preview ${id} is ${state}: ${reason}`);
    this.name = 'PreviewGone';
  }
}

/** States after which a preview never becomes ready again (a server-tier preview: `failed` is final). */
export const GONE_STATES: ReadonlySet<string> = new Set(['failed', 'ended', 'stopping']);

/** A preview as `GET /v1/previews/:id` shows it (the fields the bench reads). */
export interface View {
  id: string;
  state: string;
  tier?: string;
  placement?: unknown;
  error?: string | null;
}

/** What the client counted, for the result line. */
export interface ClientStats {
  requests: number;
  retries: number;
  /** Per step: requests whose connection broke and that were sent again through the balancer. */
  failovers: Map<string, number>;
  /** `<step> <status> <code>` (or `<step> <error name>`) → how often. */
  errors: Map<string, number>;
  /** Edits whose seq an earlier attempt took (its answer lost): applied, never acked to the bench. */
  editsTakenUnacked: number;
}

export function newClientStats(): ClientStats {
  return { requests: 0, retries: 0, failovers: new Map(), errors: new Map(), editsTakenUnacked: 0 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/**
 * A connection that broke or was refused: undici's `fetch` rejects with a `TypeError` ("fetch
 * failed", its cause the socket error). A timeout (`AbortSignal.timeout`) is a `DOMException`, not this.
 */
export const connectionFailed = (e: unknown): boolean => e instanceof TypeError;

/**
 * The API of `url` (the balancer) as user `jwt`.
 * @param o.requestTimeoutMs one request at most. @default 120000
 */
export function chaosClient(o: { url: string; jwt: string; stats: ClientStats; requestTimeoutMs?: number }) {
  const { stats } = o;
  const once = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    stats.requests++;
    const res = await fetch(`${o.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${o.jwt}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(o.requestTimeoutMs ?? 120_000),
    });
    const text = await res.text();
    if (res.status >= 300) throw new HttpFailure(res.status, text, res.headers.get('retry-after'));
    return text ? (JSON.parse(text) as unknown) : undefined;
  };

  /**
   * `fn` until it succeeds, fails with an error `retryable` refuses, or `deadline` passes. A broken
   * connection is a failover: sent again at once (the balancer picks a live replica); a second one in
   * a row waits like any other retry. Other failures wait `Retry-After` or the backoff (100 ms · 2^n,
   * at most 2 s).
   */
  const retrying = async <T>(
    what: string,
    deadline: number,
    fn: () => Promise<T>,
    retryable: (e: unknown) => boolean = transient,
  ): Promise<T> => {
    let failedOver = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (connectionFailed(e)) bump(stats.failovers, what);
        else
          bump(
            stats.errors,
            e instanceof HttpFailure
              ? `${what} ${e.status}${e.code ? ` ${e.code}` : ''}`
              : `${what} ${(e as Error).name}`,
          );
        if (!retryable(e) || Date.now() > deadline) throw e;
        stats.retries++;
        if (connectionFailed(e) && !failedOver) {
          failedOver = true;
          continue;
        }
        failedOver = false;
        const backoff = Math.min(2_000, 100 * 2 ** Math.min(attempt, 5));
        await sleep(Math.max(backoff, e instanceof HttpFailure ? (e.retryAfterMs ?? 0) : 0));
      }
    }
  };

  const view = (id: string) => once('GET', `/v1/previews/${id}`) as Promise<View>;
  const get = (id: string, deadline: number) => retrying('get', deadline, () => view(id));

  /** `PreviewGone` when the preview is gone, else `otherwise`: what a 409 turns into. */
  const goneOr = async (id: string, deadline: number, otherwise: unknown): Promise<unknown> => {
    const v = await get(id, deadline);
    return GONE_STATES.has(v.state) ? new PreviewGone(id, v.state, v.error || v.state) : otherwise;
  };

  /** Waits until the preview is `ready`. @throws PreviewGone once it is failed (or ended). */
  const settle = async (id: string, deadline: number): Promise<View> => {
    for (;;) {
      const v = await get(id, deadline);
      if (v.state === 'ready') return v;
      if (GONE_STATES.has(v.state)) throw new PreviewGone(id, v.state, v.error || v.state);
      if (Date.now() > deadline) throw new Error(`preview ${id} stuck ${v.state}`);
      await sleep(200);
    }
  };

  /** `POST /v1/previews` under an idempotency key (a repeated create is the same preview). */
  const create = (body: object, key: string, deadline: number) =>
    retrying('create', deadline, () =>
      once('POST', '/v1/previews', body, { 'idempotency-key': key }),
    ) as Promise<View>;

  /** Repeat-safe: an ended preview answers 204 again. */
  const destroy = (id: string, deadline: number) =>
    retrying('delete', deadline, () => once('DELETE', `/v1/previews/${id}`));

  /**
   * Puts `content` at `path` as batch `seq`. Resolves `persisted` (acked persisted: it must be in the
   * final files), `applied`, or `taken` (an earlier attempt of this seq reached the preview and its
   * answer was lost: 409 `duplicate_seq`; nothing is sent again).
   * @throws PreviewGone when the preview failed or ended (409 `preview_ended`)
   */
  const edit = async (
    id: string,
    seq: number,
    path: string,
    content: string,
    deadline: number,
  ): Promise<'persisted' | 'applied' | 'taken'> => {
    const batch = { type: 'batch', seq, ops: [{ op: 'put', path, content, encoding: 'utf8' }] };
    try {
      const r = (await retrying('edit', deadline, () => once('PUT', `/v1/previews/${id}/files`, batch))) as {
        persisted?: { stage: string; seq: number };
      };
      return r.persisted?.stage === 'persisted' && r.persisted.seq >= seq ? 'persisted' : 'applied';
    } catch (e) {
      if (!(e instanceof HttpFailure) || e.status !== 409) throw e;
      if (e.code === 'duplicate_seq') {
        stats.editsTakenUnacked++;
        return 'taken';
      }
      throw await goneOr(id, deadline, e);
    }
  };

  /**
   * Suspend or resume. An answer showing the preview gone gives up (a resume answers a preview that
   * is not suspended as it is: 200 with `failed`). A 409 (not in a state that allows it) looks at the
   * preview: already there (a retried request took effect before its answer was lost) is done, gone
   * gives up, anything else (moving, starting) waits and tries again.
   * @throws PreviewGone when the preview failed or ended
   */
  const act = async (id: string, action: 'suspend' | 'resume', deadline: number): Promise<void> => {
    for (;;) {
      try {
        const v = (await retrying(action, deadline, () =>
          once('POST', `/v1/previews/${id}/${action}`),
        )) as View;
        // A resume of a preview that is not suspended answers it as it is, a failed one too.
        if (GONE_STATES.has(v.state)) throw new PreviewGone(id, v.state, v.error || v.state);
        return;
      } catch (e) {
        if (!(e instanceof HttpFailure) || e.status !== 409 || Date.now() > deadline) throw e;
        const v = await get(id, deadline);
        if (GONE_STATES.has(v.state)) throw new PreviewGone(id, v.state, v.error || v.state);
        if ((action === 'suspend' && v.state === 'suspended') || (action === 'resume' && v.state === 'ready'))
          return;
        await sleep(300);
      }
    }
  };

  return { once, retrying, view, settle, create, destroy, edit, act };
}

/**
 * Retried: a broken connection, 5xx (503 `unavailable` while Postgres or Redis restarts, 503 while a
 * tier is unavailable, 504) and 429. Not: other 4xx, 409 included (each step decides what its 409
 * means).
 */
export function transient(e: unknown): boolean {
  return !(e instanceof HttpFailure) || e.status >= 500 || e.status === 429;
}

/** A failure reason without the ids in it, to count reasons across cycles. */
export function reasonKind(reason: string): string {
  return reason
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>')
    .replace(/\b[0-9a-f]{12,64}\b/g, '<hex>')
    .slice(0, 160);
}

/** A random edit content naming its preview and seq. */
export const editContent = (id: string, seq: number) =>
  `${id} edit ${seq} ${randomBytes(4).toString('hex')}\n`;
