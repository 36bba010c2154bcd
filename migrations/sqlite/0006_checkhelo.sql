-- CheckHelo settings (mirrors sluice_engine::checkhelo::def): one row per policy, every
-- setting NULL = inherit (merged over the matched policies as Policyd does), and the global
-- HELO blacklist and whitelist. CheckHelo *state* (the HELOs each client used) is not stored
-- here: it lives in process (embedded mode) or in Redis (cluster mode), with TTLs.

CREATE TABLE policy_checkhelo (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id INTEGER NOT NULL UNIQUE REFERENCES policy (id) ON DELETE CASCADE,
    use_blacklist BOOLEAN,
    blacklist_period BIGINT CHECK (blacklist_period >= 0),
    use_hrp BOOLEAN,
    hrp_period BIGINT CHECK (hrp_period >= 0),
    hrp_limit BIGINT CHECK (hrp_limit >= 0),
    reject_invalid BOOLEAN,
    reject_ip BOOLEAN,
    reject_unresolvable BOOLEAN,
    dns_failure TEXT,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);

CREATE TABLE checkhelo_blacklist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    helo TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);

CREATE TABLE checkhelo_whitelist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);

CREATE TRIGGER policy_checkhelo_ai AFTER INSERT ON policy_checkhelo
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_checkhelo_au AFTER UPDATE ON policy_checkhelo
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_checkhelo_ad AFTER DELETE ON policy_checkhelo
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER checkhelo_blacklist_ai AFTER INSERT ON checkhelo_blacklist
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER checkhelo_blacklist_au AFTER UPDATE ON checkhelo_blacklist
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER checkhelo_blacklist_ad AFTER DELETE ON checkhelo_blacklist
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER checkhelo_whitelist_ai AFTER INSERT ON checkhelo_whitelist
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER checkhelo_whitelist_au AFTER UPDATE ON checkhelo_whitelist
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER checkhelo_whitelist_ad AFTER DELETE ON checkhelo_whitelist
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
