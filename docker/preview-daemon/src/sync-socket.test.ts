import { LIMITS } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { describeBadFrame } from './sync-socket.ts';

describe('describeBadFrame', () => {
  const fallback = { type: 'error' as const, code: 'malformed_frame', message: 'ops: bad', seq: 4 };
  const frame = (ops: unknown[]) => JSON.stringify({ type: 'batch', seq: 4, ops });

  it('names the offending path and rule of a batch', () => {
    expect(
      describeBadFrame(frame([{ op: 'put', path: '/etc/passwd', content: '' }]), fallback),
    ).toMatchObject({
      code: 'invalid_path',
      seq: 4,
      message: expect.stringMatching(/^"\/etc\/passwd": .*\(rule \w+\)$/),
    });
    expect(describeBadFrame(frame([{ op: 'rename', from: 'a', to: '../b' }]), fallback)).toMatchObject({
      code: 'invalid_path',
      message: expect.stringContaining('"../b"'),
    });
  });

  it('names sizes and counts over the limits', () => {
    const big = 'x'.repeat(LIMITS.fileBytes + 1);
    expect(describeBadFrame(frame([{ op: 'put', path: 'a.txt', content: big }]), fallback)).toMatchObject({
      code: 'too_large',
      message: expect.stringContaining('(rule file_size)'),
    });
    const many = Array.from({ length: LIMITS.batchOps + 1 }, (_, i) => ({ op: 'delete', path: `f${i}` }));
    expect(describeBadFrame(frame(many), fallback)).toMatchObject({
      code: 'too_many_files',
      message: expect.stringContaining('(rule batch_ops)'),
    });
  });

  it('keeps the schema error for anything else', () => {
    expect(describeBadFrame('{not json', fallback)).toBe(fallback);
    expect(describeBadFrame(JSON.stringify({ type: 'ping', t: 'x' }), fallback)).toBe(fallback);
    expect(describeBadFrame(frame([{ op: 'put', path: 'ok.txt', content: 'x' }]), fallback)).toBe(fallback);
  });
});
