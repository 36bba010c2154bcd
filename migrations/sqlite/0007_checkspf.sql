-- CheckSPF settings (mirrors sluice_engine::checkspf::def): one row per policy, every
-- setting NULL = inherit (merged over the matched policies as Policyd does); and
-- greylisting's `skip_spf_pass` (do not greylist a triplet whose sender's SPF passes).

CREATE TABLE policy_checkspf (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    policy_id INTEGER NOT NULL UNIQUE REFERENCES policy (id) ON DELETE CASCADE,
    enabled BOOLEAN,
    reject_failed BOOLEAN,
    add_header BOOLEAN,
    disabled BOOLEAN NOT NULL DEFAULT 0,
    comment TEXT
);

ALTER TABLE policy_greylisting ADD COLUMN skip_spf_pass BOOLEAN;

CREATE TRIGGER policy_checkspf_ai AFTER INSERT ON policy_checkspf
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_checkspf_au AFTER UPDATE ON policy_checkspf
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER policy_checkspf_ad AFTER DELETE ON policy_checkspf
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
END;
