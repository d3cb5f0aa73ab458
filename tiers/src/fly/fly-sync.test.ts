import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../errors.ts';
import { parseBatch } from './fly-sync.ts';

const refusal = (batch: unknown) => {
  try {
    parseBatch(batch);
  } catch (e) {
    return e as InvalidInputError;
  }
  throw new Error('parseBatch accepted the batch');
};

describe('parseBatch', () => {
  it('returns a valid batch', () => {
    const batch = { type: 'batch', seq: 1, ops: [{ op: 'put', path: 'a.txt', content: 'x' }] };
    expect(parseBatch(batch)).toMatchObject(batch);
  });

  it('calls a bad path invalid_path, naming the field', () => {
    const e = refusal({ type: 'batch', seq: 1, ops: [{ op: 'put', path: '../etc/passwd', content: 'x' }] });
    expect(e).toBeInstanceOf(InvalidInputError);
    expect(e.code).toBe('invalid_path');
    expect(e.message).toMatch(/^batch\.ops\.0\.path: /);
  });

  it('calls any other problem invalid_batch', () => {
    const e = refusal({ type: 'batch', seq: -1, ops: [] });
    expect(e.code).toBe('invalid_batch');
    expect(e.message).toMatch(/batch\.seq/);
  });
});
