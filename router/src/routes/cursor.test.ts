import { InvalidInputError } from '@preview/tiers';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from './cursor.ts';

describe('list cursor', () => {
  it('round-trips the creation time and id', () => {
    const row = {
      createdAt: new Date('2026-01-02T03:04:05.678Z'),
      id: '0b6c3a0e-8f0e-4c1a-9a43-5c1f1d0b2e7a',
    };
    expect(decodeCursor(encodeCursor(row))).toEqual(row);
  });

  it.each([
    ['not base64 of anything', 'zzz'],
    ['a bad date', Buffer.from('yesterday|0b6c3a0e-8f0e-4c1a-9a43-5c1f1d0b2e7a').toString('base64url')],
    ['an id that is not a uuid', Buffer.from('2026-01-02T03:04:05.678Z|42').toString('base64url')],
    ['no id', Buffer.from('2026-01-02T03:04:05.678Z').toString('base64url')],
  ])('refuses %s, naming the query field', (_, cursor) => {
    let err: unknown;
    try {
      decodeCursor(cursor);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as Error).message).toMatch(/cursor/);
  });
});
