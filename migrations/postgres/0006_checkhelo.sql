-- CheckHelo settings (mirrors sluice_engine::checkhelo::def): one row per policy, every
-- setting NULL = inherit (merged over the matched policies as Policyd does), and the global
-- HELO blacklist and whitelist. CheckHelo *state* (the HELOs each client used) is not stored
-- here: it lives in process (embedded mode) or in Redis (cluster mode), with TTLs.

CREATE TABLE policy_checkhelo (
    id BIGSERIAL PRIMARY KEY,
    policy_id BIGINT NOT NULL UNIQUE REFERENCES policy (id) ON DELETE CASCADE,
    use_blacklist BOOLEAN,
    blacklist_period BIGINT CHECK (blacklist_period >= 0),
    use_hrp BOOLEAN,
    hrp_period BIGINT CHECK (hrp_period >= 0),
    hrp_limit BIGINT CHECK (hrp_limit >= 0),
    reject_invalid BOOLEAN,
    reject_ip BOOLEAN,
    reject_unresolvable BOOLEAN,
    dns_failure TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

CREATE TABLE checkhelo_blacklist (
    id BIGSERIAL PRIMARY KEY,
    helo TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

CREATE TABLE checkhelo_whitelist (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

CREATE TRIGGER policy_checkhelo_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_checkhelo
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER checkhelo_blacklist_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON checkhelo_blacklist
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER checkhelo_whitelist_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON checkhelo_whitelist
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();
