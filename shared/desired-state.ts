// What a request for a target does to the desired state already recorded.

export type TargetStatus = 'pending' | 'awaiting_mirror' | 'proposed' | 'synced' | 'failed';
export const TARGET_STATUSES: readonly TargetStatus[] = ['pending', 'awaiting_mirror', 'proposed', 'synced', 'failed'];

/**
 * created: a target seen for the first time.
 * superseded: a new tag or digest replaces the desired one.
 * retried: the same tag again for a failed target; re-running a CI job is how users retry.
 * unchanged: the same tag again otherwise; nothing is written.
 */
export type Change = 'created' | 'superseded' | 'retried' | 'unchanged';

/** Decides the change a request makes, from the recorded desired state (if any). */
export function decideChange(
  existing: { desiredTag: string; desiredDigest: string | null; status: TargetStatus } | undefined,
  request: { tag: string; digest: string | null },
): Change {
  if (!existing) return 'created';
  if (existing.desiredTag !== request.tag || existing.desiredDigest !== request.digest) return 'superseded';
  return existing.status === 'failed' ? 'retried' : 'unchanged';
}
