import { createHmac } from 'node:crypto';
import { errorFromHttp, PreviewError, TimeoutError } from '../errors.ts';
import type { ScriptRun, TierStatus } from '../types.ts';
import type { PreviewPhase } from '../wire.ts';
import { sleep } from './retry.ts';

/** What the daemon's health route said, or `undefined` when no daemon answered yet. */
export interface DaemonHealth {
  status: number;
  phase?: string | undefined;
  message?: string | undefined;
}

/** What {@link FlyEdge} needs. */
export interface FlyEdgeOptions {
  /** The app's public URL (`https://<app>.fly.dev`), no trailing slash. */
  appUrl: string;
  /** Secret each preview's daemon token is derived from. */
  daemonTokenSecret: string;
  /** How often the health route is polled, ms. */
  pollMs: number;
  fetch: typeof fetch;
}

/**
 * A preview's daemon as reached through Fly's edge: every request carries
 * `fly-force-instance-id: <machineId>`, and the daemon's token is HMAC-SHA256 of the preview id.
 */
export class FlyEdge {
  readonly appUrl: string;
  /** The daemon's sync socket behind the edge (`wss://<app>.fly.dev/__preview/sync`). */
  readonly wsUrl: string;
  readonly #o: FlyEdgeOptions;

  constructor(o: FlyEdgeOptions) {
    this.#o = o;
    this.appUrl = o.appUrl;
    this.wsUrl = `${o.appUrl.replace(/^http/, 'ws')}/__preview/sync`;
  }

  /** The preview's daemon token (base64url HMAC-SHA256 of `fly-daemon:<previewId>`). */
  tokenFor(previewId: string): string {
    return createHmac('sha256', this.#o.daemonTokenSecret)
      .update(`fly-daemon:${previewId}`)
      .digest('base64url');
  }

  /** Headers that make the edge route to one machine. */
  headers(machineId: string): Record<string, string> {
    return { 'fly-force-instance-id': machineId };
  }

  /**
   * The daemon's `/__preview/health`, within 5 s; `undefined` when nothing or only the edge answered.
   * @throws the signal's reason when `signal` aborts.
   */
  async health(machineId: string, signal?: AbortSignal): Promise<DaemonHealth | undefined> {
    try {
      const t = AbortSignal.timeout(5_000);
      const res = await this.#o.fetch(`${this.appUrl}/__preview/health`, {
        headers: this.headers(machineId),
        signal: signal ? AbortSignal.any([signal, t]) : t,
      });
      const body = (await res.json().catch(() => ({}))) as { phase?: string; message?: string };
      // The edge answers for itself (no daemon behind it yet) without the daemon's JSON.
      if (body.phase === undefined && res.status !== 200) return undefined;
      return { status: res.status, phase: body.phase, message: body.message };
    } catch {
      if (signal?.aborted) throw signal.reason;
      return undefined;
    }
  }

  /**
   * Polls the health route until the daemon listens (`ready` false) or its dev server is ready
   * (`ready` true: status 200).
   * @throws PreviewError `preview_error` when waiting for ready and the daemon reports phase `error`;
   * TimeoutError `timeout` after `timeoutMs` ms.
   */
  async waitDaemon(
    machineId: string,
    ready: boolean,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: DaemonHealth | undefined;
    while (Date.now() < deadline) {
      last = await this.health(machineId, signal);
      if (last && (!ready || last.status === 200)) return;
      if (last?.phase === 'error' && ready)
        throw new PreviewError(
          'preview_error',
          `the preview's dev server failed on machine ${machineId}: ${last.message ?? 'no message'}`,
        );
      await sleep(this.#o.pollMs, signal);
    }
    throw new TimeoutError(
      'timeout',
      `machine ${machineId}: daemon not ${ready ? 'ready' : 'listening'} after ${timeoutMs} ms (last: ${JSON.stringify(last)})`,
    );
  }

  /**
   * Runs the project's npm script `name` on the machine (`POST /__preview/scripts/<name>`, the daemon's
   * PROTOCOL.md), within 150 s; returns how it ended, whatever its exit code.
   * @throws the daemon's refusal as a tier error (`errorFromHttp`: 404 `no_script`, 409, ...).
   */
  async runScript(
    previewId: string,
    machineId: string,
    name: string,
    signal?: AbortSignal,
  ): Promise<ScriptRun> {
    const t = AbortSignal.timeout(150_000);
    const res = await this.#o.fetch(`${this.appUrl}/__preview/scripts/${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: { ...this.headers(machineId), authorization: `Bearer ${this.tokenFor(previewId)}` },
      signal: signal ? AbortSignal.any([signal, t]) : t,
    });
    const body = (await res.json().catch(() => undefined)) as unknown;
    if (!res.ok) throw errorFromHttp(res.status, body, 'fly');
    return body as ScriptRun;
  }

  /**
   * The daemon's `/__preview/status` (phase, message, last 200 log lines), within 5 s;
   * `starting` when it does not answer or answers an error.
   * @throws the signal's reason when `signal` aborts.
   */
  async daemonStatus(previewId: string, machineId: string, signal?: AbortSignal): Promise<TierStatus> {
    try {
      const t = AbortSignal.timeout(5_000);
      const res = await this.#o.fetch(`${this.appUrl}/__preview/status`, {
        headers: { ...this.headers(machineId), authorization: `Bearer ${this.tokenFor(previewId)}` },
        signal: signal ? AbortSignal.any([signal, t]) : t,
      });
      if (!res.ok) return { phase: 'starting', message: `daemon answered ${res.status}` };
      return parseDaemonStatus(await res.json());
    } catch {
      if (signal?.aborted) throw signal.reason;
      return { phase: 'starting', message: 'daemon not reachable yet' };
    }
  }
}

/**
 * A tier status from the daemon's status body: an unknown phase reads as `starting`, the log is cut
 * to its last 200 lines, absent fields stay absent.
 * @throws TypeError when the body is `null` (the caller reports the daemon as not reachable).
 */
export function parseDaemonStatus(raw: unknown): TierStatus {
  const body = raw as { phase?: PreviewPhase; message?: string; log?: string[] };
  const phase: PreviewPhase = ['installing', 'starting', 'ready', 'error'].includes(body.phase ?? '')
    ? (body.phase as PreviewPhase)
    : 'starting';
  return {
    phase,
    ...(body.message ? { message: body.message } : {}),
    ...(Array.isArray(body.log) ? { log: body.log.slice(-200) } : {}),
  };
}
