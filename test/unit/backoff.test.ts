import { describe, expect, it } from 'vitest';
import { backoffMs } from '../../shared/backoff.ts';

describe('backoffMs', () => {
  const policy = { initialMs: 1000, maxMs: 60_000 };
  it('doubles per attempt and caps at the maximum', () => {
    const top = (attempt: number) => backoffMs(attempt, policy, () => 0.999999);
    expect([1, 2, 3, 4, 5, 6, 7, 8].map(top)).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
    expect(top(1000)).toBe(60000);
  });
  it('jitters between half and all of the delay', () => {
    expect(backoffMs(3, policy, () => 0)).toBe(2000);
    expect(backoffMs(3, policy, () => 0.5)).toBe(3000);
    for (let i = 0; i < 10_000; i++) {
      const d = backoffMs(2, policy);
      expect(d).toBeGreaterThanOrEqual(1000);
      // Rounded to whole milliseconds, so the top of [0.5, 1) can reach the full delay.
      expect(d).toBeLessThanOrEqual(2000);
    }
  });
});
