import { describe, expect, it, vi } from 'vitest';
import type { DevServer } from './dev-server.ts';
import { HmrTracker } from './hmr-tracker.ts';
import { CRASH_BACKOFF_MAX_MS, crashDelay, DevLifecycle, isUp } from './lifecycle.ts';
import { LogRing, silentLogger } from './log.ts';
import { DaemonStatus } from './status.ts';

/** An in-memory DevServer: `code` is what its probe answers; `exit` makes it stop by itself. */
class MemoryDevServer implements DevServer {
  alive = false;
  code = 200;
  closed = false;
  constructor(
    readonly exit: (reason: string) => void,
    readonly starting: () => Promise<void> = async () => {},
  ) {}
  async start() {
    await this.starting();
    this.alive = true;
  }
  handle() {}
  upgrade() {
    return false;
  }
  async probe() {
    return this.code;
  }
  async close() {
    this.alive = false;
    this.closed = true;
  }
}

function setUp(
  o: {
    install?: () => Promise<string | undefined>;
    depsKey?: () => string;
    installNeeded?: () => boolean;
    code?: number;
    /** What the n-th dev server (0-based) does while it starts; a rejection is a start that failed. */
    starting?: (n: number) => Promise<void>;
  } = {},
) {
  const phases: string[] = [];
  const status = new DaemonStatus({ ring: new LogRing(), log: silentLogger, onReady: () => {} });
  status.clients.add({ readyState: 1, send: (t) => phases.push(JSON.parse(t).phase) });
  const servers: MemoryDevServer[] = [];
  const life = new DevLifecycle({
    status,
    log: silentLogger,
    tracker: new HmrTracker(() => {}),
    anyAnswer: false,
    ensureDeps: o.install ?? (async () => 'k1'),
    depsKey: o.depsKey ?? (() => 'k1'),
    installNeeded: o.installNeeded ?? (() => true),
    createDevServer: (onExit) => {
      const n = servers.length;
      const d = new MemoryDevServer(onExit, o.starting && (() => o.starting!(n)));
      if (o.code !== undefined) d.code = o.code;
      servers.push(d);
      return d;
    },
  });
  return { status, life, servers, phases };
}

describe('crash backoff and readiness', () => {
  it('doubles the delay from 500 ms up to the cap', () => {
    expect([1, 2, 3, 20].map(crashDelay)).toEqual([500, 1000, 2000, CRASH_BACKOFF_MAX_MS]);
  });
  it('is up on 200, or on any answer below 500 for an API server', () => {
    expect([isUp(200, false), isUp(404, false), isUp(404, true), isUp(500, true), isUp(0, true)]).toEqual([
      true,
      false,
      true,
      false,
      false,
    ]);
  });
});

describe('DevLifecycle', () => {
  it('installs, starts the dev server and reports ready once it answers 200', async () => {
    const { status, life, servers, phases } = setUp();
    life.start();
    await life.settled();
    expect([status.phase, servers.length, servers[0]?.alive]).toEqual(['ready', 1, true]);
    expect(phases).toEqual(['starting', 'ready']);
    await life.close();
    expect(servers[0]?.closed).toBe(true);
  });

  it('a queued restart is not ready at once, and only the new dev server reports ready', async () => {
    const { status, life, servers } = setUp();
    life.start();
    await life.settled();
    life.onEnvApplied();
    expect([status.phase, status.message]).toEqual(['starting', 'applying the environment']);
    await life.settled();
    expect([status.phase, servers.length, servers[0]?.closed, servers[1]?.alive]).toEqual([
      'ready',
      2,
      true,
      true,
    ]);
    await life.close();
  });

  it('a failed install is an error with its message; a dev server answering 500 is one too', async () => {
    const failing = setUp({
      install: async () => {
        throw new Error('npm ci failed for left-pad@9: E404');
      },
    });
    failing.life.start();
    await failing.life.settled();
    expect([failing.status.phase, failing.status.message]).toEqual([
      'error',
      'npm ci failed for left-pad@9: E404',
    ]);
    const broken = setUp({ code: 500 });
    broken.life.start();
    await broken.life.settled();
    expect([broken.status.phase, broken.status.message]).toEqual([
      'error',
      'the dev server answered 500 on /',
    ]);
    await Promise.all([failing.life.close(), broken.life.close()]);
  });

  it('an app that stops by itself is an error naming the attempt, then starts again', async () => {
    const { status, life, servers } = setUp();
    life.start();
    await life.settled();
    const first = servers[0]!;
    first.alive = false;
    first.exit('the app exited with code 1');
    expect(status.message).toBe('the app exited with code 1\nrestarting it in 0.5 s (attempt 1)');
    await vi.waitFor(() => expect([servers.length, status.phase]).toEqual([2, 'ready']), { timeout: 5_000 });
    await life.close();
  });

  it('a changed package.json installs again; nothing restarts after close', async () => {
    let key = 'k1';
    const { status, life, servers } = setUp({ install: async () => key, depsKey: () => key });
    life.start();
    await life.settled();
    key = 'k2';
    life.afterApply(true, false, false);
    // package.json now asks for k2, the installed key is k1: installed again.
    expect(status.phase).toBe('installing');
    await life.settled();
    expect([status.phase, servers.length]).toEqual(['ready', 2]);
    await life.close();
    life.afterApply(false, true, false);
    await life.settled();
    expect(servers.length).toBe(2);
  });

  it('a changed package.json that npm need not install (the same packages linked) is starting, not installing', async () => {
    let key = 'k1';
    const { status, life, servers, phases } = setUp({
      install: async () => key,
      depsKey: () => key,
      installNeeded: () => false,
    });
    life.start();
    await life.settled();
    const from = phases.length;
    key = 'k2';
    life.afterApply(true, false, false);
    expect(status.phase).toBe('starting');
    await life.settled();
    expect([status.phase, servers.length]).toEqual(['ready', 2]);
    expect(phases.slice(from)).not.toContain('installing');
    await life.close();
  });

  // A claim's project replaces the template's while a dev server started for the environment may be
  // reading it: that server can run the user's server.js under the template's package.json ("type":
  // "module"), and stop. A start of the current project is queued behind it (bench scale saw the
  // claimer fail on the first one's error: "require is not defined in ES module scope").
  it('a dev server that stops after a newer start was queued is no error: the queued one reports ready', async () => {
    let key = 'k1';
    const { status, life, servers, phases } = setUp({ install: async () => key, depsKey: () => key });
    life.start();
    await life.settled();
    const from = phases.length;
    key = 'k2';
    life.afterApply(true, false, false); // package.json changed: install, then start again
    servers[0]!.alive = false;
    servers[0]!.exit('the app exited with code 1; last lines:\nReferenceError: require is not defined');
    await life.settled();
    expect(phases.slice(from)).not.toContain('error');
    expect([status.phase, servers.length, servers[1]?.alive]).toEqual(['ready', 2, true]);
    await life.close();
  });

  it('a dev server that fails to start after a newer start was queued is no error either', async () => {
    let release = () => {};
    const { status, life, servers, phases } = setUp({
      starting: (n) =>
        n === 1
          ? new Promise<void>((_, reject) => {
              release = () => reject(new Error('the app exited with code 1'));
            })
          : Promise.resolve(),
    });
    life.start();
    await life.settled();
    const from = phases.length;
    life.onEnvApplied(); // dev server 1 starts for the environment …
    for (let i = 0; i < 50 && servers.length < 2; i++) await new Promise((r) => setTimeout(r, 1));
    life.afterApply(false, true, false); // … while the project it reads is replaced
    release();
    await life.settled();
    expect(phases.slice(from)).not.toContain('error');
    expect([status.phase, servers.length, servers[2]?.alive]).toEqual(['ready', 3, true]);
    await life.close();
  });
});
