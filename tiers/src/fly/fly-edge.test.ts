import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PreviewError, TimeoutError } from '../errors.ts';
import { FlyEdge, parseDaemonStatus } from './fly-edge.ts';

/** A stand-in for Fly's edge on loopback: answers from `reply` and records the instance header. */
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});
async function edgeOn(reply: (path: string, n: number) => { status: number; body?: unknown }) {
  const seen: Array<{ path: string; instance?: string; auth?: string }> = [];
  const server = createServer((req, res) => {
    seen.push({
      path: req.url ?? '',
      instance: req.headers['fly-force-instance-id'] as string,
      auth: req.headers.authorization,
    });
    const r = reply(req.url ?? '', seen.length);
    res.writeHead(r.status, { 'content-type': 'application/json' });
    res.end(r.body === undefined ? 'edge says no' : JSON.stringify(r.body));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const edge = new FlyEdge({
    appUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    daemonTokenSecret: 'test-secret-0123456789abcdef',
    pollMs: 5,
    fetch,
  });
  return { edge, seen };
}

describe('FlyEdge', () => {
  it('derives a stable per-preview token and a ws URL for the sync socket', () => {
    const edge = new FlyEdge({
      appUrl: 'https://app.fly.dev',
      daemonTokenSecret: 's'.repeat(16),
      pollMs: 1,
      fetch,
    });
    expect(edge.wsUrl).toBe('wss://app.fly.dev/__preview/sync');
    expect(edge.tokenFor('p1')).toBe(edge.tokenFor('p1'));
    expect(edge.tokenFor('p1')).not.toBe(edge.tokenFor('p2'));
  });

  it('waits past the edge answering for itself until the daemon listens, then until it is ready', async () => {
    const { edge, seen } = await edgeOn((_, n) =>
      n < 3
        ? { status: 502 }
        : n < 5
          ? { status: 503, body: { phase: 'installing' } }
          : { status: 200, body: { phase: 'ready' } },
    );
    await edge.waitDaemon('m1', false, 5_000);
    expect(seen).toHaveLength(3);
    await edge.waitDaemon('m1', true, 5_000);
    expect(seen).toHaveLength(5);
    expect(seen.every((s) => s.instance === 'm1' && s.path === '/__preview/health')).toBe(true);
  });

  it('fails fast when the dev server reports an error, and times out when nothing answers', async () => {
    const { edge } = await edgeOn(() => ({ status: 503, body: { phase: 'error', message: 'boom' } }));
    await expect(edge.waitDaemon('m1', true, 5_000)).rejects.toThrow(PreviewError);
    await expect(edge.waitDaemon('m1', true, 5_000)).rejects.toThrow(/boom/);
    const quiet = await edgeOn(() => ({ status: 502 }));
    await expect(quiet.edge.waitDaemon('m1', false, 30)).rejects.toThrow(TimeoutError);
  });

  it('asks the daemon for status with its token, and reads a refusal as starting', async () => {
    const { edge, seen } = await edgeOn((_, n) =>
      n === 1 ? { status: 200, body: { phase: 'ready', log: ['a'] } } : { status: 401, body: {} },
    );
    expect(await edge.daemonStatus('p1', 'm1')).toEqual({ phase: 'ready', log: ['a'] });
    expect(seen[0]).toMatchObject({
      path: '/__preview/status',
      instance: 'm1',
      auth: `Bearer ${edge.tokenFor('p1')}`,
    });
    expect(await edge.daemonStatus('p1', 'm1')).toEqual({
      phase: 'starting',
      message: 'daemon answered 401',
    });
  });
});

describe('parseDaemonStatus', () => {
  it('keeps a known phase, the message, and the last 200 log lines', () => {
    const log = Array.from({ length: 250 }, (_, i) => `l${i}`);
    expect(parseDaemonStatus({ phase: 'error', message: 'm', log })).toEqual({
      phase: 'error',
      message: 'm',
      log: log.slice(-200),
    });
  });
  it('reads an unknown or missing phase as starting', () => {
    expect(parseDaemonStatus({ phase: 'dancing' })).toEqual({ phase: 'starting' });
    expect(parseDaemonStatus({})).toEqual({ phase: 'starting' });
  });
});
