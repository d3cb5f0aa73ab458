import type { ServerResponse } from 'node:http';
import { LIVE_STATES } from '@preview/tiers';
import type { EventHub } from '../events.ts';
import type { Session } from '../store/sessions.ts';
import { previewIdFromHost } from './preview-host.ts';
import { type StatusKind, statusPage } from './status-page.ts';

/** The status page as a response, given the preview's session (if known) and what to say. */
export type StatusResponder = (
  s: Session | undefined,
  id: string,
  kind: StatusKind,
  status: number,
  message?: string,
) => Promise<Response>;

/**
 * The proxy's status page responses: HTML, never cached, `x-preview-status: <kind>`, and
 * `retry-after: 2` on a 503. A known session's last log lines are shown; the page keeps watching
 * (`live`) while the session is live and the preview is not a browser-tier one.
 */
export function createStatusResponder(events: Pick<EventHub, 'lastLogLines'>): StatusResponder {
  return async (s, id, kind, status, message) => {
    const log = s ? await events.lastLogLines(id).catch(() => []) : [];
    const live = !!s && LIVE_STATES.includes(s.state) && kind !== 'browser';
    return new Response(statusPage({ kind, previewId: id, message, log, live }), {
      status,
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'x-preview-status': kind,
        ...(status === 503 ? { 'retry-after': '2' } : {}),
      },
    });
  };
}

/** Answers a request whose upstream did not: a 502 status page (`x-preview-status: error`). */
export function upstreamDownResponder(domain: string): (res: ServerResponse) => void {
  return (res) => {
    const id = previewIdFromHost(res.req.headers.host, domain) ?? '';
    const html = statusPage({
      kind: 'error',
      previewId: id,
      message: 'the preview did not answer',
      log: [],
      live: true,
    });
    res.writeHead(502, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'x-preview-status': 'error',
    });
    res.end(html);
  };
}

/**
 * Which status page a session that is not ready (or is on the browser tier) gets: from its state,
 * and while it starts, from its latest `status` event (`installing`, `error`, else `compiling`).
 */
export async function statusKindOf(s: Session, events: Pick<EventHub, 'recent'>): Promise<StatusKind> {
  if (s.state === 'failed') return 'error';
  if (s.state === 'ended' || s.state === 'stopping') return 'ended';
  if (s.tier === 'browser') return 'browser';
  if (s.state === 'suspended') return 'waking';
  if (s.state === 'queued' || s.state === 'provisioning' || s.state === 'migrating') return 'queued';
  const recent = await events.recent(s.id, 20);
  const phase = [...recent].reverse().find((e) => e.type === 'status');
  if (phase?.type === 'status' && phase.phase === 'installing') return 'installing';
  if (phase?.type === 'status' && phase.phase === 'error') return 'error';
  return 'compiling';
}
