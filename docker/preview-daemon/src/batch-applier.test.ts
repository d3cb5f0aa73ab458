import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BatchOrigin, FileOp } from '@preview/tiers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchApplier } from './batches.ts';
import { HmrTracker } from './hmr-tracker.ts';
import { LogRing, silentLogger } from './log.ts';
import { OriginLog } from './origin-log.ts';
import { scanProject } from './project-scan.ts';
import { DaemonStatus } from './status.ts';
import { TMP_DIR_NAME } from './validate.ts';
import { ProjectWriter } from './writer.ts';

/** The real writer, counting the puts it is asked to write; a put of `boom.txt` fails as a full disk. */
class CountingWriter extends ProjectWriter {
  puts = 0;
  override applySync(ops: readonly FileOp[]): void {
    this.#count(ops);
    super.applySync(ops);
  }
  override async apply(ops: readonly FileOp[]): Promise<void> {
    this.#count(ops);
    await super.apply(ops);
  }
  #count(ops: readonly FileOp[]) {
    if (ops.some((op) => op.op === 'put' && op.path === 'boom.txt'))
      throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
    this.puts += ops.filter((op) => op.op === 'put').length;
  }
}

let root: string;
beforeEach(() => {
  root = realpathSync(mkdtempSync(join(tmpdir(), 'daemon-applier-')));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function applier(limits = { maxFiles: 100, maxBytes: 100_000 }) {
  const index = scanProject(root);
  const writer = new CountingWriter(root, index);
  const frames: Array<{ type: string; seq?: number; code?: string }> = [];
  const ws = { readyState: 1, send: (text: string) => void frames.push(JSON.parse(text)) };
  const origins = new OriginLog(join(root, TMP_DIR_NAME), silentLogger);
  const batches = new BatchApplier({
    root,
    template: 'vite-vanilla',
    limits,
    index,
    writer,
    origins,
    tracker: new HmrTracker(() => {}),
    status: new DaemonStatus({ ring: new LogRing(), log: silentLogger, onReady: () => {} }),
    lifecycle: { dev: undefined, afterApply: () => {} },
    onApplied: () => {},
  });
  const send = (seq: number, ops: FileOp[], origin?: BatchOrigin) =>
    batches.enqueue(ws, { type: 'batch', seq, ops, ...(origin ? { origin } : {}) }, performance.now());
  /** Resolves once every batch sent so far is answered. */
  const answered = async (n: number) => {
    for (let i = 0; frames.length < n && i < 1000; i++) await new Promise((r) => setTimeout(r, 2));
    return frames.map((f) => (f.type === 'ack' ? `ack ${f.seq}` : `error ${f.seq} ${f.code}`));
  };
  return { batches, writer, frames, send, answered, origins };
}

const put = (path: string, content: string): FileOp => ({ op: 'put', path, content, encoding: 'utf8' });
const read = (path: string) => readFileSync(join(root, path), 'utf8');

describe('BatchApplier: batches that wait together are written as one run', () => {
  it('writes each path once for a backlog of edits of the same files, and acks every batch in order', async () => {
    const a = applier();
    for (let seq = 1; seq <= 30; seq++) a.send(seq, [put('a.txt', `a${seq}`), put('data/b.txt', `b${seq}`)]);
    expect(await a.answered(30)).toEqual(Array.from({ length: 30 }, (_, i) => `ack ${i + 1}`));
    expect([read('a.txt'), read('data/b.txt')]).toEqual(['a30', 'b30']);
    expect(a.batches.lastSeq).toBe(30);
    // One run: two files written, not sixty.
    expect(a.writer.puts).toBe(2);
  });

  it('still writes a lone edit at once, and a later one on its own', async () => {
    const a = applier();
    a.send(1, [put('a.txt', '1')]);
    expect(await a.answered(1)).toEqual(['ack 1']);
    a.send(2, [put('a.txt', '2')]);
    expect(await a.answered(2)).toEqual(['ack 1', 'ack 2']);
    expect([read('a.txt'), a.writer.puts]).toEqual(['2', 2]);
  });

  it('answers a refused batch in its place, writes nothing of it, and checks the next without it', async () => {
    const a = applier({ maxFiles: 3, maxBytes: 100_000 });
    a.send(1, [put('f1', '1'), put('f2', '2')]);
    a.send(2, [put('f3', '3'), put('f4', '4')]); // four files > 3
    a.send(3, [put('f3', 'three')]);
    a.send(4, [put('f3/x', 'x')]); // f3 is a file by now
    expect(await a.answered(4)).toEqual(['ack 1', 'error 2 too_many_files', 'ack 3', 'error 4 invalid_path']);
    expect(scanProject(root).files).toEqual(
      new Map([
        ['f1', 1],
        ['f2', 1],
        ['f3', 5],
      ]),
    );
    expect(a.batches.lastSeq).toBe(3);
  });

  it('writes an editor batch sent twice in one run (a new owner sent it again) once, answering both', async () => {
    const a = applier();
    a.send(1, [put('a.txt', '1')], { client: 'c', seq: 1 });
    a.send(2, [put('a.txt', '1')], { client: 'c', seq: 1 });
    a.send(3, [put('a.txt', '2')], { client: 'c', seq: 2 });
    a.send(4, [put('x/../y', 'bad')], { client: 'c', seq: 3 });
    a.send(5, [put('x/../y', 'bad')], { client: 'c', seq: 3 });
    expect(await a.answered(5)).toEqual([
      'ack 1',
      'ack 2',
      'ack 3',
      'error 4 invalid_path',
      'error 5 invalid_path',
    ]);
    expect(read('a.txt')).toBe('2');
    expect(a.origins.seen({ client: 'c', seq: 2 })).toEqual({ applied: true });
    expect(a.origins.seen({ client: 'c', seq: 3 })).toMatchObject({ applied: false, code: 'invalid_path' });
  });

  it('does a run whose write failed again one batch at a time, so each gets its own answer', async () => {
    const a = applier();
    a.send(1, [put('a.txt', '1')]);
    a.send(2, [put('boom.txt', 'x')]);
    a.send(3, [put('a.txt', '3')]);
    expect(await a.answered(3)).toEqual(['ack 1', 'error 2 disk_full', 'ack 3']);
    expect(read('a.txt')).toBe('3');
    expect(a.batches.lastSeq).toBe(3);
  });
});
