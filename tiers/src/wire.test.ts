import { describe, expect, it } from 'vitest';
import { LIMITS } from './limits.ts';
import { ClientFrame, contentBytes, FileBatch, NodeRegistration, parseFrame } from './wire.ts';

describe('wire schemas', () => {
  it('parses a batch with each op kind and defaults encoding to utf8', () => {
    const b = FileBatch.parse({
      type: 'batch',
      seq: 3,
      ops: [
        { op: 'put', path: 'a.txt', content: 'hi' },
        { op: 'delete', path: 'b.txt' },
        { op: 'rename', from: 'c.txt', to: 'd/c.txt' },
      ],
    });
    expect(b.ops[0]).toEqual({ op: 'put', path: 'a.txt', content: 'hi', encoding: 'utf8' });
  });

  it('rejects a bad path in any op field, naming it', () => {
    const r = parseFrame(
      ClientFrame,
      JSON.stringify({ type: 'batch', seq: 1, ops: [{ op: 'rename', from: 'a', to: '../b' }] }),
    );
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('invalid_path');
      expect(r.error.message).toContain('ops.0.to');
      expect(r.error.seq).toBe(1);
    }
  });

  it('rejects an oversized file with code too_large', () => {
    const big = 'x'.repeat(LIMITS.fileBytes + 1);
    const r = parseFrame(
      ClientFrame,
      JSON.stringify({ type: 'batch', seq: 9, ops: [{ op: 'put', path: 'big', content: big }] }),
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('too_large');
  });

  it('answers malformed JSON and unknown frames with error frames', () => {
    const a = parseFrame(ClientFrame, '{nope');
    expect(a.ok || a.error.code).toBe('malformed_frame');
    const b = parseFrame(ClientFrame, JSON.stringify({ type: 'launch-missiles' }));
    expect(b.ok || b.error.code).toBe('invalid_frame');
    const c = parseFrame(ClientFrame, JSON.stringify({ type: 'batch', seq: -1, ops: [] }));
    expect(c.ok || c.error.code).toBe('invalid_frame');
  });

  it('computes decoded base64 size', () => {
    const content = Buffer.from('hello world!!').toString('base64');
    expect(contentBytes({ content, encoding: 'base64' })).toBe(13);
    expect(contentBytes({ content: '€' })).toBe(3);
  });

  it('validates node registration names', () => {
    const base = {
      joinToken: 'x'.repeat(32),
      url: 'http://127.0.0.1:7000',
      capacity: { slots: 4, used: 0, warm: {} },
      runtime: 'docker',
    };
    expect(NodeRegistration.safeParse({ ...base, name: 'node-1' }).success).toBe(true);
    expect(NodeRegistration.safeParse({ ...base, name: 'node 1; rm' }).success).toBe(false);
  });
});
