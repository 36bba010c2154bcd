-- Counter resets made through the admin service (docs/admin.md, "Live counters"): one row
-- per reset, so that every edge on this database forgets what it holds locally for that
-- counter (its over-limit memo and its lease). Written with the reset's audit entry (SQLite
-- has one writer at a time, so ids are committed in increasing order; AUTOINCREMENT never
-- reuses one); rows older than an hour are pruned by the writer.
CREATE TABLE counter_resets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    counter_key TEXT NOT NULL
);
