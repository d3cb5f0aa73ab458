import type { FileOp, ServerFrame } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { SyncSession } from './sync-session.ts';
import type { TransportHandlers } from './transport.ts';

/** A transport that records what the session sends and lets the test answer as the hub would. */
function recordingTransport() {
  const sent: unknown[] = [];
  let handlers: TransportHandlers | undefined;
  return {
    sent,
    factory: (h: TransportHandlers) => {
      handlers = h;
      queueMicrotask(() => h.onOpen());
      return { bufferedAmount: 0, send: (f: unknown) => sent.push(f), close: () => {} };
    },
    answer: (f: ServerFrame) => handlers?.onFrame(f),
  };
}

describe('SyncSession with a local runtime (browser tier)', () => {
  it('reports applied from the local runtime, in order, and persisted from the hub', async () => {
    const t = recordingTransport();
    const appliedOps: FileOp[][] = [];
    let release: () => void = () => {};
    const firstDone = new Promise<void>((r) => {
      release = r;
    });
    const sync = new SyncSession({
      transport: t.factory,
      applyLocally: async (ops) => {
        if (appliedOps.length === 0) await firstDone;
        appliedOps.push(ops);
      },
    });
    const applied: number[] = [];
    sync.on('applied', (e) => applied.push(e.seq));
    sync.write('a.ts', '1');
    sync.flush();
    sync.write('b.ts', '2');
    sync.flush();
    await new Promise((r) => setTimeout(r, 10));
    // The second batch waits for the first: the runtime applies in order.
    expect(applied).toEqual([]);
    release();
    await new Promise((r) => setTimeout(r, 10));
    expect(applied).toEqual([1, 2]);
    expect(appliedOps.map((ops) => ops.map((o) => o.op === 'put' && o.path))).toEqual([['a.ts'], ['b.ts']]);
    const persisted = sync.whenPersisted();
    t.answer({ type: 'ack', seq: 2, stage: 'persisted' });
    await persisted;
    sync.close();
  });

  it('a runtime that fails to apply is an apply_failed error, not an applied ack', async () => {
    const t = recordingTransport();
    const sync = new SyncSession({
      transport: t.factory,
      applyLocally: async () => {
        throw new Error('disk full');
      },
    });
    const errors: string[] = [];
    const applied: number[] = [];
    sync.on('error', (e) => errors.push(`${e.error.code}: ${e.error.message}`));
    sync.on('applied', (e) => applied.push(e.seq));
    sync.write('a.ts', '1');
    sync.flush();
    await new Promise((r) => setTimeout(r, 10));
    expect(applied).toEqual([]);
    expect(errors).toEqual(['apply_failed: batch 1: the local runtime failed: disk full']);
    sync.close();
  });

  it('rejects an applyLocally that is not a function, naming it', () => {
    expect(
      () => new SyncSession({ transport: recordingTransport().factory, applyLocally: 'x' as never }),
    ).toThrow(/options.applyLocally/);
  });
});
