import {
  type NodeCapacity,
  NodeHeartbeat,
  NodeRegistered,
  NodeRegistration,
  PreviewError,
  UnauthorizedError,
} from '@preview/tiers';
import pRetry from 'p-retry';
import type { Logger } from 'pino';
import { z } from 'zod';

export interface RegistrationOptions {
  routerUrl: string;
  joinToken: string;
  name: string;
  /** The URL the router reaches this agent at. */
  url: string;
  runtime: 'docker' | 'process';
  capacity: () => NodeCapacity;
  sessions: () => string[];
  /** Called with each new credential (first registration and re-registrations). */
  onCredential?: (credential: string) => void;
  /**
   * Called with the router's answer to each registration (first and re-registrations), e.g. to
   * follow the preview database it announces (`database`).
   */
  onRegistered?: (registered: NodeRegistered) => void;
  log?: Logger;
  fetch?: typeof fetch;
  /** How long to keep retrying a registration the router did not answer (default 60 s). */
  retryForMs?: number;
}

export interface Registration {
  readonly nodeId: string;
  readonly credential: string;
  /** Sends one heartbeat now (also used by tests). */
  beat(): Promise<void>;
  /** The sessions the router considers live on this node, or `undefined` if it cannot say. */
  liveSessions(): Promise<string[] | undefined>;
  /**
   * Tells the router at once that a preview's sandbox stopped for good (`POST
   * /v1/nodes/previews/:id/failed`), so GET and SSE show `failed` with the reason without waiting
   * for a reconcile. Retried a few times; resolves false when the router could not be told.
   */
  reportFailed(previewId: string, reason: string, oomKilled: boolean): Promise<boolean>;
  stop(): void;
}

const LiveSessions = z.object({ sessions: z.array(z.string()) });

/**
 * Registers the node with the router (join token → node credential) and heartbeats its capacity,
 * warm counts and sessions every `heartbeatMs`. A heartbeat answered 401 re-registers.
 *
 * @example
 * const reg = await register({ routerUrl, joinToken, name: 'node-1', url: 'http://10.0.0.5:7070', runtime: 'docker', capacity, sessions });
 */
export async function register(options: RegistrationOptions): Promise<Registration> {
  const f = options.fetch ?? fetch;
  const base = options.routerUrl.replace(/\/$/, '');

  const doRegister = async (): Promise<NodeRegistered> => {
    const body = NodeRegistration.parse({
      joinToken: options.joinToken,
      name: options.name,
      url: options.url,
      capacity: options.capacity(),
      runtime: options.runtime,
    });
    const res = await f(`${base}/v1/nodes/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const json = await res.json().catch(() => undefined);
    if (res.status === 401 || res.status === 403)
      throw new UnauthorizedError('unauthorized', `router refused the join token (${res.status})`);
    if (!res.ok)
      throw new PreviewError('registration_failed', `router answered ${res.status}: ${JSON.stringify(json)}`);
    const reg = NodeRegistered.parse(json);
    options.onCredential?.(reg.credential);
    options.onRegistered?.(reg);
    options.log?.info({ nodeId: reg.nodeId, heartbeatMs: reg.heartbeatMs }, 'registered with the router');
    return reg;
  };

  // The router may still be starting: retry what is not a refusal, with backoff, for a while.
  const registerWithRetry = () =>
    pRetry(doRegister, {
      retries: Number.POSITIVE_INFINITY,
      minTimeout: 250,
      maxTimeout: 5000,
      maxRetryTime: options.retryForMs ?? 60_000,
      shouldRetry: ({ error }) => !(error instanceof UnauthorizedError),
      onFailedAttempt: ({ error, retriesLeft }) => {
        if (retriesLeft > 0 && !(error instanceof UnauthorizedError))
          options.log?.warn({ err: error }, 'registration failed; retrying');
      },
    });
  let current = await registerWithRetry();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const beat = async (): Promise<void> => {
    const hb = NodeHeartbeat.parse({
      capacity: options.capacity(),
      sessions: options.sessions(),
      at: Date.now(),
    });
    const res = await f(`${base}/v1/nodes/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${current.credential}` },
      body: JSON.stringify(hb),
      signal: AbortSignal.timeout(10_000),
    });
    await res.body?.cancel();
    if (res.status === 401) {
      options.log?.warn('heartbeat refused (401): registering again');
      current = await registerWithRetry();
      return;
    }
    if (!res.ok) throw new PreviewError('heartbeat_failed', `router answered ${res.status} to a heartbeat`);
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      beat()
        .catch((e) => options.log?.warn({ err: e }, 'heartbeat failed'))
        .finally(schedule);
    }, current.heartbeatMs);
    timer.unref();
  };
  schedule();

  return {
    get nodeId() {
      return current.nodeId;
    },
    get credential() {
      return current.credential;
    },
    beat,
    async reportFailed(previewId, reason, oomKilled) {
      try {
        await pRetry(
          async () => {
            const res = await f(`${base}/v1/nodes/previews/${encodeURIComponent(previewId)}/failed`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${current.credential}` },
              body: JSON.stringify({ reason: reason.slice(0, 2000) || 'sandbox stopped', oomKilled }),
              signal: AbortSignal.timeout(5000),
            });
            await res.body?.cancel();
            // 404: the router no longer places it here (deleted, moved); nothing to tell.
            if (!res.ok && res.status !== 404)
              throw new PreviewError('report_failed', `router answered ${res.status} to a failure report`);
          },
          { retries: 3, minTimeout: 100, maxTimeout: 1000 },
        );
        return true;
      } catch (e) {
        options.log?.warn({ err: e, previewId }, 'could not report a failed preview to the router');
        return false;
      }
    },
    async liveSessions() {
      try {
        const res = await f(`${base}/v1/nodes/sessions`, {
          headers: { authorization: `Bearer ${current.credential}` },
          signal: AbortSignal.timeout(10_000),
        });
        if (!res.ok) {
          await res.body?.cancel();
          return undefined;
        }
        return LiveSessions.parse(await res.json()).sessions;
      } catch (e) {
        options.log?.warn({ err: e }, 'could not ask the router for live sessions');
        return undefined;
      }
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
