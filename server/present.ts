// How targets and events look to API clients: nested, ISO times, no internals.
import type { Target, TargetEvent } from '../shared/store.ts';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The JSON form of a target. */
export function presentTarget(t: Target) {
  return {
    id: t.id,
    repository: t.repository,
    branch: t.branch,
    image: t.image,
    keyword: t.keyword,
    status: t.status,
    desired: { tag: t.desiredTag, digest: t.desiredDigest, requestedBy: t.requestedBy, requestedAt: iso(t.requestedAt) },
    applied:
      t.appliedTag === null
        ? null
        : { tag: t.appliedTag, digest: t.appliedDigest, commit: t.appliedCommit, at: iso(t.appliedAt) },
    proposal: t.proposalUrl === null ? null : { number: t.proposalNumber, url: t.proposalUrl },
    attempts: t.attempts,
    nextAttemptAt: t.status === 'pending' || t.status === 'awaiting_mirror' ? iso(t.nextAttemptAt) : null,
    lastError: t.lastErrorCode === null ? null : { code: t.lastErrorCode, message: t.lastErrorMessage },
    createdAt: iso(t.createdAt),
    updatedAt: iso(t.updatedAt),
  };
}

/** The JSON form of an event. */
export function presentEvent(e: TargetEvent) {
  return {
    id: e.id,
    at: iso(e.at),
    type: e.type,
    tag: e.tag,
    digest: e.digest,
    message: e.message,
    details: e.details,
    traceId: e.traceId,
  };
}
