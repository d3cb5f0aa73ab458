import { describe, expect, it } from 'vitest';
import { TierUnavailableError } from '../errors.ts';
import { sumCapacity } from './agent-client.ts';

describe('sumCapacity', () => {
  const node = (slots: number, used: number, warm: Record<string, number> = {}) => ({ slots, used, warm });
  it('sums slots, free slots and warm containers per template', () => {
    expect(sumCapacity([node(4, 1, { 'vite-react': 2 }), node(2, 3, { 'vite-react': 1, next: 1 })])).toEqual({
      total: 6,
      available: 3,
      warm: { 'vite-react': 3, next: 1 },
    });
  });
  it('a silent agent does not make the tier full: unknown when no answer has room', () => {
    expect(sumCapacity([node(2, 0), undefined]).available).toBe(2);
    expect(() => sumCapacity([node(2, 2), undefined])).toThrow(TierUnavailableError);
    expect(sumCapacity([node(2, 2)])).toEqual({ total: 2, available: 0, warm: {} });
  });
});
