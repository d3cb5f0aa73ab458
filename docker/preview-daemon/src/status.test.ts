import { describe, expect, it, vi } from 'vitest';
import { IdleCollector } from './idle-gc.ts';
import { LogRing, silentLogger } from './log.ts';
import { DaemonStatus, type StatusSocket } from './status.ts';

/** A sync socket as the status sees it: open or not, and what it was sent. */
const socket = (readyState: number) => {
  const sent: Array<Record<string, unknown>> = [];
  const s: StatusSocket = { readyState, send: (t) => sent.push(JSON.parse(t)) };
  return { s, sent };
};

describe('DaemonStatus', () => {
  it('broadcasts each change to open sockets only, and runs onReady on ready', () => {
    let readies = 0;
    const status = new DaemonStatus({ ring: new LogRing(), log: silentLogger, onReady: () => readies++ });
    const open = socket(1);
    const closed = socket(3);
    status.clients.add(open.s);
    status.clients.add(closed.s);
    expect([status.phase, status.message]).toEqual(['starting', 'starting']);
    status.ring.push('vite v8');
    status.set('ready');
    status.set('ready'); // no change: nothing sent
    expect(open.sent.map((f) => [f['type'], f['phase'], f['message'], f['log']])).toEqual([
      ['status', 'ready', undefined, ['vite v8']],
    ]);
    expect([closed.sent.length, readies]).toEqual([0, 1]);
    status.set('error', 'boom');
    expect(open.sent.at(-1)).toMatchObject({ phase: 'error', message: 'boom' });
  });

  it('carries log lines in one throttled frame while installing, and none otherwise', async () => {
    const status = new DaemonStatus({
      ring: new LogRing(),
      log: silentLogger,
      onReady: () => {},
      logFrameMs: 5,
    });
    const open = socket(1);
    status.clients.add(open.s);
    status.onLog('not installing');
    status.set('installing', 'installing dependencies');
    status.onLog('added 1 package');
    status.onLog('added 2 packages');
    await vi.waitFor(() => expect(open.sent.length).toBe(2));
    expect(open.sent[1]?.['log']).toEqual(['not installing', 'added 1 package', 'added 2 packages']);
    status.close();
  });
});

describe('IdleCollector', () => {
  it('collects once after activity stops, and does nothing without gc', async () => {
    let runs = 0;
    const idle = new IdleCollector({ gc: () => runs++, idleMs: 5 });
    idle.activity();
    idle.activity();
    await vi.waitFor(() => expect(runs).toBe(1));
    idle.activity();
    await vi.waitFor(() => expect(runs).toBe(2));
    expect(() => new IdleCollector({ gc: undefined }).activity()).not.toThrow();
  });
});
