-- Sluice policy definitions (mirrors sluice_engine::model). Table names are singular so that a
-- Policyd v2 schema (plural names) can live in the same database without clashing.

-- One row; its counter is bumped by triggers on every change of a policy table, so changes
-- made directly in SQL are noticed by `Store::watch` too.
CREATE TABLE policy_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO policy_version (id, version) VALUES (1, 1);

CREATE TABLE policy_group (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);

CREATE TABLE policy_group_member (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL REFERENCES policy_group (id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);
CREATE INDEX policy_group_member_group ON policy_group_member (group_id);

CREATE TABLE policy (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    priority INTEGER NOT NULL DEFAULT 0,
    description TEXT,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    monitor BOOLEAN NOT NULL DEFAULT 0
);

CREATE TABLE policy_member (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id INTEGER NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    source TEXT,
    destination TEXT,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);
CREATE INDEX policy_member_policy ON policy_member (policy_id);

CREATE TABLE policy_access_control (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id INTEGER NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    verdict TEXT NOT NULL,
    data TEXT,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT,
    UNIQUE (policy_id, name)
);

CREATE TABLE policy_quota (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id INTEGER NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    track TEXT NOT NULL,
    period BIGINT NOT NULL CHECK (period >= 0),
    verdict TEXT NOT NULL,
    data TEXT,
    last_quota BOOLEAN NOT NULL DEFAULT 0,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT,
    UNIQUE (policy_id, name)
);

CREATE TABLE policy_quota_limit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    quota_id INTEGER NOT NULL REFERENCES policy_quota (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    counter_limit BIGINT NOT NULL CHECK (counter_limit >= 0),
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);
CREATE INDEX policy_quota_limit_quota ON policy_quota_limit (quota_id);

-- Bump policy_version on every change of every policy table.

CREATE TRIGGER policy_group_ai AFTER INSERT ON policy_group
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_group_au AFTER UPDATE ON policy_group
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_group_ad AFTER DELETE ON policy_group
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_group_member_ai AFTER INSERT ON policy_group_member
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_group_member_au AFTER UPDATE ON policy_group_member
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_group_member_ad AFTER DELETE ON policy_group_member
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_ai AFTER INSERT ON policy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_au AFTER UPDATE ON policy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_ad AFTER DELETE ON policy
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_member_ai AFTER INSERT ON policy_member
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_member_au AFTER UPDATE ON policy_member
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_member_ad AFTER DELETE ON policy_member
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_access_control_ai AFTER INSERT ON policy_access_control
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_access_control_au AFTER UPDATE ON policy_access_control
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_access_control_ad AFTER DELETE ON policy_access_control
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_quota_ai AFTER INSERT ON policy_quota
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_quota_au AFTER UPDATE ON policy_quota
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_quota_ad AFTER DELETE ON policy_quota
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_quota_limit_ai AFTER INSERT ON policy_quota_limit
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_quota_limit_au AFTER UPDATE ON policy_quota_limit
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_quota_limit_ad AFTER DELETE ON policy_quota_limit
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
