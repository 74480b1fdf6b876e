-- Pull-request write-back: a target can be `proposed` (its change is in an open pull request), and
-- keeps the pull request's number and address. SQLite cannot change a CHECK constraint in place, so
-- the table is rebuilt (https://www.sqlite.org/lang_altertable.html#otheralter); the migration runner
-- turns foreign keys off around it and checks them before it commits.

CREATE TABLE targets_new (
  id                 INTEGER PRIMARY KEY,
  repository         TEXT    NOT NULL,
  branch             TEXT    NOT NULL,
  image              TEXT    NOT NULL,           -- normalised: docker.io/library/nginx
  keyword            TEXT    NOT NULL,
  desired_tag        TEXT    NOT NULL,
  desired_digest     TEXT,
  generation         INTEGER NOT NULL DEFAULT 1, -- bumped on every new request, so a sync never records over a newer one
  batch_id           TEXT,
  requested_by       TEXT    NOT NULL,           -- token name
  requested_at       INTEGER NOT NULL,
  request_trace      TEXT,                       -- W3C traceparent of the request that set the desired tag
  status             TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'awaiting_mirror', 'proposed', 'synced', 'failed')),
  attempts           INTEGER NOT NULL DEFAULT 0,
  next_attempt_at    INTEGER NOT NULL,
  last_error_code    TEXT,
  last_error_message TEXT,
  applied_tag        TEXT,
  applied_digest     TEXT,
  applied_commit     TEXT,
  applied_at         INTEGER,
  proposal_number    INTEGER,                    -- the pull request carrying the desired tag (status proposed)
  proposal_url       TEXT,
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL,
  UNIQUE (repository, branch, image, keyword)
) STRICT;

INSERT INTO targets_new (id, repository, branch, image, keyword, desired_tag, desired_digest, generation, batch_id,
    requested_by, requested_at, request_trace, status, attempts, next_attempt_at, last_error_code, last_error_message,
    applied_tag, applied_digest, applied_commit, applied_at, created_at, updated_at)
  SELECT id, repository, branch, image, keyword, desired_tag, desired_digest, generation, batch_id,
    requested_by, requested_at, request_trace, status, attempts, next_attempt_at, last_error_code, last_error_message,
    applied_tag, applied_digest, applied_commit, applied_at, created_at, updated_at
  FROM targets;

DROP TABLE targets;
ALTER TABLE targets_new RENAME TO targets;
CREATE INDEX targets_due ON targets (status, next_attempt_at);
