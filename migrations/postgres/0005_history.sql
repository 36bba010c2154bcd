-- Refusal history and sender counts (docs/admin.md, "History" and "Top senders"). Written
-- in batches by every serving process (serve, edge) in the background, never per request;
-- pruned in batches after `history_retention_secs`. Neither table bumps policy_version.
-- Edges need only INSERT and DELETE on these two tables (and USAGE on their sequences):
-- see docs/cluster.md.

-- One refusal: a request whose final action refused it (REJECT, DEFER, DEFER_IF_PERMIT,
-- 4xx/5xx, HOLD, DISCARD), with the request's fields and the verdict that decided it.
CREATE TABLE IF NOT EXISTS refusal_history (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL,
    helo TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sasl_user TEXT NOT NULL,
    policy TEXT NOT NULL,
    module TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refusal_history_at ON refusal_history (at_ms);

-- Requests and refusals per sender and minute, as counted by one process (approximate:
-- a process keeps its busiest senders of each minute, see docs/admin.md); summed over
-- processes and minutes when read.
CREATE TABLE IF NOT EXISTS sender_counts (
    id BIGSERIAL PRIMARY KEY,
    minute_ms BIGINT NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL,
    requests BIGINT NOT NULL,
    refusals BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sender_counts_minute ON sender_counts (minute_ms);
