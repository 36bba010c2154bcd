-- Greylisting settings (mirrors sluice_engine::greylisting::def): one row per policy, every
-- setting NULL = inherit (merged over the matched policies as Policyd does), and the global
-- static whitelist. Greylisting *state* (triplets, auto-white/blacklist entries) is not
-- stored here: it lives in process (embedded mode) or in Redis (cluster mode), with TTLs.

CREATE TABLE policy_greylisting (
    id BIGSERIAL PRIMARY KEY,
    policy_id BIGINT NOT NULL UNIQUE REFERENCES policy (id) ON DELETE CASCADE,
    enabled BOOLEAN,
    period BIGINT CHECK (period >= 0),
    track TEXT,
    ipv6_prefix SMALLINT CHECK (ipv6_prefix BETWEEN 0 AND 128),
    auth_validity BIGINT CHECK (auth_validity >= 0),
    unauth_validity BIGINT CHECK (unauth_validity >= 0),
    auto_whitelist BOOLEAN,
    auto_whitelist_period BIGINT CHECK (auto_whitelist_period >= 0),
    auto_whitelist_count BIGINT CHECK (auto_whitelist_count >= 0),
    auto_whitelist_percentage BIGINT CHECK (auto_whitelist_percentage BETWEEN 0 AND 100),
    auto_blacklist BOOLEAN,
    auto_blacklist_period BIGINT CHECK (auto_blacklist_period >= 0),
    auto_blacklist_count BIGINT CHECK (auto_blacklist_count >= 0),
    auto_blacklist_percentage BIGINT CHECK (auto_blacklist_percentage BETWEEN 0 AND 100),
    training BOOLEAN,
    defer_message TEXT,
    blacklist_message TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

CREATE TABLE greylisting_whitelist (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

CREATE TRIGGER policy_greylisting_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_greylisting
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER greylisting_whitelist_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON greylisting_whitelist
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();
