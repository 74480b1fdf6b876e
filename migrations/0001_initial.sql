-- Desired state per (repository, branch, image, keyword), its audit trail, and the commits that carried it.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE targets (
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
                     CHECK (status IN ('pending', 'awaiting_mirror', 'synced', 'failed')),
  attempts           INTEGER NOT NULL DEFAULT 0,
  next_attempt_at    INTEGER NOT NULL,
  last_error_code    TEXT,
  last_error_message TEXT,
  applied_tag        TEXT,
  applied_digest     TEXT,
  applied_commit     TEXT,
  applied_at         INTEGER,
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL,
  UNIQUE (repository, branch, image, keyword)
) STRICT;

CREATE INDEX targets_due ON targets (status, next_attempt_at);

CREATE TABLE events (
  id        INTEGER PRIMARY KEY,
  target_id INTEGER NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
  at        INTEGER NOT NULL,
  type      TEXT    NOT NULL,  -- requested, superseded, mirror_confirmed, mirrored, committed, pushed, synced, failed
  tag       TEXT,
  digest    TEXT,
  message   TEXT,
  details   TEXT,              -- JSON object
  trace_id  TEXT
) STRICT;

CREATE INDEX events_by_target ON events (target_id, id);

CREATE TABLE commits (
  id         INTEGER PRIMARY KEY,
  repository TEXT    NOT NULL,
  branch     TEXT    NOT NULL,
  sha        TEXT    NOT NULL,
  mode       TEXT    NOT NULL CHECK (mode IN ('batch', 'single')),
  at         INTEGER NOT NULL,
  UNIQUE (repository, sha)
) STRICT;

CREATE TABLE commit_targets (
  commit_id INTEGER NOT NULL REFERENCES commits (id) ON DELETE CASCADE,
  target_id INTEGER NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
  from_tag  TEXT,
  to_tag    TEXT    NOT NULL,
  PRIMARY KEY (commit_id, target_id)
) STRICT;
