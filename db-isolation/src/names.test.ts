import { describe, expect, it } from 'vitest';
import { namesFor, previewIdFromHex, validTargetSchema } from './names.ts';

describe('namesFor', () => {
  it('derives unquoted names under 63 bytes from the uuid, lowercased', () => {
    const n = namesFor('6F1C2B3A-0D4E-4F50-8A6B-7C8D9E0F1A2B');
    expect(n).toEqual({
      previewId: '6f1c2b3a-0d4e-4f50-8a6b-7c8d9e0f1a2b',
      hex: '6f1c2b3a0d4e4f508a6b7c8d9e0f1a2b',
      schema: 'preview_6f1c2b3a0d4e4f508a6b7c8d9e0f1a2b',
      role: 'p_6f1c2b3a0d4e4f508a6b7c8d9e0f1a2b',
    });
    expect(n.schema.length).toBeLessThan(63);
    expect(previewIdFromHex(n.hex)).toBe(n.previewId);
  });

  it.each([
    ['not-a-uuid'],
    ["6f1c2b3a-0d4e-4f50-8a6b-7c8d9e0f1a2b'; DROP ROLE postgres; --"],
    ['6f1c2b3a0d4e4f508a6b7c8d9e0f1a2b'],
    [''],
    [undefined],
    [{}],
  ])('rejects %j naming the field', (bad) => {
    expect(() => namesFor(bad)).toThrow(
      expect.objectContaining({
        name: 'InvalidInputError',
        code: 'invalid_preview_id',
        message: expect.stringMatching(/^previewId: /),
      }),
    );
  });
});

describe('validTargetSchema', () => {
  it('accepts plain lowercase identifiers', () => {
    expect(validTargetSchema('public')).toBe('public');
    expect(validTargetSchema('app_2')).toBe('app_2');
  });

  it.each([['App'], ['a-b'], ['pg_temp'], ['x'.repeat(64)], [''], ['a"b']])('rejects %j', (bad) => {
    expect(() => validTargetSchema(bad)).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/^targetSchema: /) }),
    );
  });
});
