-- Tags the syncer confirmed in or copied to the mirror registry, so that `mirror.keep` can delete
-- the old ones it put there (and only those). Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE mirror_tags (
  repository  TEXT    NOT NULL,  -- in the mirror registry: mirror/gcr.io/acme/app
  tag         TEXT    NOT NULL,
  digest      TEXT    NOT NULL,
  image       TEXT    NOT NULL,  -- the source image, normalised: gcr.io/acme/app
  recorded_at INTEGER NOT NULL,  -- when first confirmed or copied
  PRIMARY KEY (repository, tag)
) STRICT;

CREATE INDEX mirror_tags_by_age ON mirror_tags (repository, recorded_at);
