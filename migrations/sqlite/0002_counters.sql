-- In-process counters and message sessions of `sluice serve` (embedded mode), so that a
-- restart neither forgets nor double-counts. Written in the background by the server
-- (services/store/src/store/counters.rs); nothing here is read per request, and nothing
-- bumps policy_version.

-- One row per counter: its rolling window's sub-buckets as (index, count) pairs of
-- little-endian 64-bit integers (16 bytes a bucket), indexed by bucket_ms-wide steps since the
-- epoch. expires_ms is when the newest bucket leaves the window: from then on the row counts
-- nothing and is deleted.
CREATE TABLE quota_counter (
    counter_key TEXT PRIMARY KEY NOT NULL,
    period_ms BIGINT NOT NULL CHECK (period_ms > 0),
    bucket_ms BIGINT NOT NULL CHECK (bucket_ms > 0),
    buckets BLOB NOT NULL,
    expires_ms BIGINT NOT NULL
) WITHOUT ROWID;
CREATE INDEX quota_counter_expires ON quota_counter (expires_ms);

-- Message sessions (the `instance` correlation of MessageCount and size limits), saved at a
-- clean stop and read back (then deleted) at the next start. `data` holds the session's
-- once-per-message charges and END-OF-MESSAGE records (see counters.rs for the layout).
CREATE TABLE quota_session (
    instance TEXT PRIMARY KEY NOT NULL,
    expires_ms BIGINT NOT NULL,
    data BLOB NOT NULL
) WITHOUT ROWID;
