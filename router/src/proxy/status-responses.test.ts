import { describe, expect, it } from 'vitest';
import type { PreviewEvent } from '../events.ts';
import type { Session } from '../store/sessions.ts';
import { createStatusResponder, statusKindOf } from './status-responses.ts';

const session = (over: Partial<Session>) =>
  ({ id: 'p1', state: 'starting', tier: 'docker', ...over }) as Session;
const events = (list: PreviewEvent[]) => ({
  recent: async () => list,
  lastLogLines: async () => ['npm install', 'done'],
});

describe('statusKindOf', () => {
  it.each([
    [{ state: 'failed' }, 'error'],
    [{ state: 'ended' }, 'ended'],
    [{ state: 'stopping' }, 'ended'],
    [{ state: 'ready', tier: 'browser' }, 'browser'],
    [{ state: 'suspended' }, 'waking'],
    [{ state: 'queued' }, 'queued'],
    [{ state: 'provisioning' }, 'queued'],
    [{ state: 'migrating' }, 'queued'],
  ] as const)('%o → %s', async (over, kind) => {
    expect(await statusKindOf(session(over as Partial<Session>), events([]))).toBe(kind);
  });

  it('reads a starting preview’s latest status event', async () => {
    const status = (phase: string) => ({ type: 'status', phase }) as unknown as PreviewEvent;
    expect(await statusKindOf(session({}), events([status('error'), status('installing')]))).toBe(
      'installing',
    );
    expect(await statusKindOf(session({}), events([status('installing'), status('error')]))).toBe('error');
    expect(await statusKindOf(session({}), events([status('starting')]))).toBe('compiling');
    expect(await statusKindOf(session({}), events([]))).toBe('compiling');
  });
});

describe('createStatusResponder', () => {
  const page = createStatusResponder(events([]));

  it('answers uncached HTML naming the kind, with retry-after on a 503 and the log of a known session', async () => {
    const res = await page(session({}), 'p1', 'compiling', 503);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-preview-status')).toBe('compiling');
    expect(res.headers.get('retry-after')).toBe('2');
    expect(await res.text()).toContain('npm install');
  });

  it('shows no log for an unknown session and no retry-after off a 503', async () => {
    const res = await page(undefined, 'p1', 'unauthorized', 401, 'The preview link expired');
    expect(res.headers.get('retry-after')).toBeNull();
    const html = await res.text();
    expect(html).not.toContain('npm install');
    expect(html).toContain('The preview link expired');
  });
});
