-- Per-message caps (mirrors sluice_engine::caps::def): one row per policy that has them;
-- NULL = inherit (merged over the matched policies as Policyd merges module rows). The
-- per-message recipient counters are state, not stored here (in process or in Redis).

CREATE TABLE policy_message_caps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id INTEGER NOT NULL UNIQUE REFERENCES policy (id) ON DELETE CASCADE,
    max_message_size BIGINT CHECK (max_message_size >= 0),
    max_recipients BIGINT CHECK (max_recipients >= 0),
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);

CREATE TRIGGER policy_message_caps_ai AFTER INSERT ON policy_message_caps
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_message_caps_au AFTER UPDATE ON policy_message_caps
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_message_caps_ad AFTER DELETE ON policy_message_caps
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
