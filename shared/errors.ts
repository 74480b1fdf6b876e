// Typed errors with codes. One table says what each code means to an HTTP
// client; the syncer's codes join it with their retry behaviour.

export const HTTP_STATUS = {
  INVALID_JSON: 400,
  INVALID_FIELD: 400,
  MISSING_FIELD: 400,
  UNKNOWN_FIELD: 400,
  MUTABLE_TAG: 400,
  CONFLICTING_UPDATES: 400,
  BRANCH_NOT_ALLOWED: 400,
  REPOSITORY_REQUIRED: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  REPOSITORY_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNAVAILABLE: 503,
  INTERNAL: 500,
} as const;

export type ApiErrorCode = keyof typeof HTTP_STATUS;

/** An error a client caused or can act on; its message is safe to send. */
export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly field: string | undefined;

  constructor(code: ApiErrorCode, message: string, field?: string) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.field = field;
  }

  get status(): number {
    return HTTP_STATUS[this.code];
  }

  /** The JSON body every error response carries. */
  toBody(): { error: { code: string; message: string; field?: string } } {
    return {
      error: { code: this.code, message: this.message, ...(this.field === undefined ? {} : { field: this.field }) },
    };
  }
}

/**
 * Why a target could not be synced. Transient errors (network, git server,
 * rejected push) are retried with backoff; terminal ones stop the target as
 * `failed` until a new request, and their message says what to fix.
 * `repository`: the failure is the repository's (or its host's), not the image's:
 * a new tag for the target waits for the retry rather than trying again at once.
 */
export const SYNC_ERRORS = {
  MARKER_NOT_FOUND: { transient: false },
  VALIDATION_FAILED: { transient: false },
  UNSAFE_PATH: { transient: false },
  GIT_UNAVAILABLE: { transient: true, repository: true },
  GIT_AUTH_FAILED: { transient: true, repository: true },
  GIT_FAILED: { transient: true, repository: true },
  PUSH_REJECTED: { transient: true, repository: true },
  SEARCH_FAILED: { transient: true },
  SYNC_FAILED: { transient: true },
  /** The image did not appear in the mirror (verify) or its source (copy) within `mirror.timeout`. */
  MIRROR_TIMEOUT: { transient: false },
  /** A tag that names two digests (mirror and source, or what CI sent): tags must be unique. */
  TAG_MUTATED: { transient: false },
  REGISTRY_UNAVAILABLE: { transient: true },
  REGISTRY_AUTH_FAILED: { transient: true },
  REGISTRY_FAILED: { transient: true },
  /** The pull request carrying the target was closed without being merged. */
  PR_CLOSED: { transient: false },
  GITHUB_AUTH_FAILED: { transient: true, repository: true },
  /** GitHub's (secondary) rate limit: retried after the time it asks for. */
  GITHUB_RATE_LIMITED: { transient: true, repository: true },
  GITHUB_FAILED: { transient: true, repository: true },
} as const;

export type SyncErrorCode = keyof typeof SYNC_ERRORS;

/** The codes of a repository's failures (see SYNC_ERRORS). */
export const REPOSITORY_FAILURES: readonly string[] = Object.entries(SYNC_ERRORS).flatMap(([code, kind]) => ('repository' in kind ? [code] : []));

/** The same codes as an SQL list, for `last_error_code IN (…)`. */
export const REPOSITORY_FAILURES_SQL = REPOSITORY_FAILURES.map((code) => `'${code}'`).join(', ');

/** Whether a recorded error code is a repository's failure. */
export function isRepositoryFailure(code: string | null): boolean {
  return code !== null && REPOSITORY_FAILURES.includes(code);
}

/** A sync failure with its code; the message is shown to users, so it names what to fix and holds no secret. */
export class SyncError extends Error {
  readonly code: SyncErrorCode;
  /** When the other side said how long to wait (Retry-After), in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(code: SyncErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SyncError';
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }

  get transient(): boolean {
    return SYNC_ERRORS[this.code].transient;
  }
}
