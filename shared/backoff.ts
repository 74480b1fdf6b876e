// Capped, jittered exponential backoff for transient sync failures.

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/**
 * Delay before attempt `attempt + 1` after `attempt` failures (attempt >= 1):
 * initial · 2^(attempt−1), capped at max, then scaled by a jitter factor in
 * [0.5, 1) so that many repositories failing together do not retry in lockstep
 * (the targets of one repository+branch share one retry: one sync serves them all);
 * rounded to whole milliseconds (so at most the full delay).
 */
export function backoffMs(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt, 1) - 1, 30);
  const base = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  return Math.round(base * (0.5 + random() / 2));
}
