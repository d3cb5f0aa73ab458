import { describe, expect, it } from 'vitest';
import { OriginLedger } from './origin-ledger.ts';
import { FileBatch } from './wire.ts';

describe('OriginLedger', () => {
  it('answers a processed origin as it was answered the first time, and a new one as new', () => {
    const l = new OriginLedger();
    expect(l.seen({ client: 'a', seq: 1 })).toBeUndefined();
    l.record({ client: 'a', seq: 1 });
    l.record({ client: 'a', seq: 2 }, { code: 'invalid_path', message: '"x": bad (rule reserved)' });
    l.record({ client: 'a', seq: 3 });
    expect(l.seen({ client: 'a', seq: 1 })).toEqual({ applied: true });
    expect(l.seen({ client: 'a', seq: 2 })).toEqual({
      applied: false,
      code: 'invalid_path',
      message: '"x": bad (rule reserved)',
    });
    expect(l.seen({ client: 'a', seq: 3 })).toEqual({ applied: true });
    expect(l.seen({ client: 'a', seq: 4 })).toBeUndefined();
    // Clients are independent.
    expect(l.seen({ client: 'b', seq: 1 })).toBeUndefined();
  });

  it('reads back what record() and snapshot() wrote, skipping a torn last line', () => {
    const l = new OriginLedger();
    let log = '';
    log += l.record({ client: 'a', seq: 1 });
    log += l.record({ client: 'b"\n\\', seq: 7 }, { code: 'write_failed', message: 'ENOSPC\nline two' });
    log += l.record({ client: 'a', seq: 2 });
    const fromLog = new OriginLedger();
    expect(fromLog.restore(`${log}["a",3`)).toBe(1);
    const fromSnap = new OriginLedger();
    expect(fromSnap.restore(l.snapshot())).toBe(0);
    for (const r of [fromLog, fromSnap]) {
      expect(r.seen({ client: 'a', seq: 2 })).toEqual({ applied: true });
      expect(r.seen({ client: 'a', seq: 3 })).toBeUndefined();
      expect(r.seen({ client: 'b"\n\\', seq: 7 })).toEqual({
        applied: false,
        code: 'write_failed',
        message: 'ENOSPC\nline two',
      });
    }
    expect(new OriginLedger().restore('{"not":"a mark"}\n[1,2]\n["c",1.5]\n')).toBe(3);
  });

  it('stays bounded: forgets the client heard from least recently, and old refusals', () => {
    const l = new OriginLedger({ maxClients: 2, maxRefused: 2 });
    l.record({ client: 'a', seq: 1 });
    l.record({ client: 'b', seq: 1 });
    l.record({ client: 'a', seq: 2 });
    l.record({ client: 'c', seq: 1 });
    expect(l.size).toBe(2);
    expect(l.seen({ client: 'b', seq: 1 })).toBeUndefined();
    expect(l.seen({ client: 'a', seq: 2 })).toEqual({ applied: true });
    for (let s = 2; s <= 4; s++) l.record({ client: 'c', seq: s }, { code: 'x', message: String(s) });
    expect(l.seen({ client: 'c', seq: 2 })).toEqual({ applied: true });
    expect(l.seen({ client: 'c', seq: 4 })).toEqual({ applied: false, code: 'x', message: '4' });
  });
});

describe('FileBatch origin', () => {
  it('keeps a valid origin and names the field of a bad one', () => {
    const ok = FileBatch.parse({
      type: 'batch',
      seq: 9,
      ops: [{ op: 'delete', path: 'a' }],
      origin: { client: 'c1', seq: 3 },
    });
    expect(ok.origin).toEqual({ client: 'c1', seq: 3 });
    const bad = FileBatch.safeParse({
      type: 'batch',
      seq: 9,
      ops: [{ op: 'delete', path: 'a' }],
      origin: { client: '', seq: -1 },
    });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues.map((i) => i.path.join('.'))).toEqual(['origin.client', 'origin.seq']);
  });
});
