-- Accounting (docs/accounting.md): the rows of each policy (mirrors
-- sluice_engine::accounting::def::AccountingDef), and the per-period totals kept for
-- reports. Accounting *counters* are not stored here: they live in process (embedded mode)
-- or in Redis (cluster mode), one per period, forgotten after the period.
-- Re-runnable (IF NOT EXISTS): the newest migration may be applied again.

CREATE TABLE IF NOT EXISTS policy_accounting (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id INTEGER NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    track TEXT NOT NULL,
    period TEXT NOT NULL,
    time_zone TEXT,
    message_count_limit BIGINT CHECK (message_count_limit >= 0),
    recipient_count_limit BIGINT CHECK (recipient_count_limit >= 0),
    size_limit BIGINT CHECK (size_limit >= 0),
    verdict TEXT,
    data TEXT,
    last_accounting BOOLEAN NOT NULL DEFAULT 0,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT,
    UNIQUE (policy_id, name)
);

CREATE TRIGGER IF NOT EXISTS policy_accounting_ai AFTER INSERT ON policy_accounting
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER IF NOT EXISTS policy_accounting_au AFTER UPDATE ON policy_accounting
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER IF NOT EXISTS policy_accounting_ad AFTER DELETE ON policy_accounting
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

-- What serving processes counted, in batches written in the background (never per
-- request): one row per (policy, row, period, track key) and batch, summed when read
-- (`sluice accounting report`). Edges need only INSERT. Does not bump policy_version.
CREATE TABLE IF NOT EXISTS accounting_totals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    policy TEXT NOT NULL,
    name TEXT NOT NULL,
    period TEXT NOT NULL,
    track TEXT NOT NULL,
    messages BIGINT NOT NULL CHECK (messages >= 0),
    recipients BIGINT NOT NULL CHECK (recipients >= 0),
    bytes BIGINT NOT NULL CHECK (bytes >= 0)
);
CREATE INDEX IF NOT EXISTS accounting_totals_period ON accounting_totals (period);
