-- CheckSPF settings (mirrors sluice_engine::checkspf::def): one row per policy, every
-- setting NULL = inherit (merged over the matched policies as Policyd does); and
-- greylisting's `skip_spf_pass` (do not greylist a triplet whose sender's SPF passes).

CREATE TABLE policy_checkspf (
    id BIGSERIAL PRIMARY KEY,
    policy_id BIGINT NOT NULL UNIQUE REFERENCES policy (id) ON DELETE CASCADE,
    enabled BOOLEAN,
    reject_failed BOOLEAN,
    add_header BOOLEAN,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

ALTER TABLE policy_greylisting ADD COLUMN skip_spf_pass BOOLEAN;

CREATE TRIGGER policy_checkspf_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_checkspf
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();
