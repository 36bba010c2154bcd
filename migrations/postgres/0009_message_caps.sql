-- Per-message caps (mirrors sluice_engine::caps::def): one row per policy that has them;
-- NULL = inherit (merged over the matched policies as Policyd merges module rows). The
-- per-message recipient counters are state, not stored here (in process or in Redis).

CREATE TABLE policy_message_caps (
    id BIGSERIAL PRIMARY KEY,
    policy_id BIGINT NOT NULL UNIQUE REFERENCES policy (id) ON DELETE CASCADE,
    max_message_size BIGINT CHECK (max_message_size >= 0),
    max_recipients BIGINT CHECK (max_recipients >= 0),
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

CREATE TRIGGER policy_message_caps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_message_caps
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();
