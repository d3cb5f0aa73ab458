import { expect, it } from 'vitest';
import { percentile, round1 } from './stats.ts';

it('computes nearest-rank percentiles', () => {
  const s = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
  expect(percentile(s, 50)).toBe(5);
  expect(percentile(s, 99)).toBe(10);
  expect(percentile(s, 0)).toBe(1);
  expect(percentile([], 50)).toBeNaN();
  expect(round1(1.26)).toBe(1.3);
});
