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
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);

CREATE TABLE policy_group_member (
    id BIGSERIAL PRIMARY KEY,
    group_id BIGINT NOT NULL REFERENCES policy_group (id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);
CREATE INDEX policy_group_member_group ON policy_group_member (group_id);

CREATE TABLE policy (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    priority INTEGER NOT NULL DEFAULT 0,
    description TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    monitor BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE policy_member (
    id BIGSERIAL PRIMARY KEY,
    policy_id BIGINT NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    source TEXT,
    destination TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);
CREATE INDEX policy_member_policy ON policy_member (policy_id);

CREATE TABLE policy_access_control (
    id BIGSERIAL PRIMARY KEY,
    policy_id BIGINT NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    verdict TEXT NOT NULL,
    data TEXT,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT,
    UNIQUE (policy_id, name)
);

CREATE TABLE policy_quota (
    id BIGSERIAL PRIMARY KEY,
    policy_id BIGINT NOT NULL REFERENCES policy (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    track TEXT NOT NULL,
    period BIGINT NOT NULL CHECK (period >= 0),
    verdict TEXT NOT NULL,
    data TEXT,
    last_quota BOOLEAN NOT NULL DEFAULT FALSE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT,
    UNIQUE (policy_id, name)
);

CREATE TABLE policy_quota_limit (
    id BIGSERIAL PRIMARY KEY,
    quota_id BIGINT NOT NULL REFERENCES policy_quota (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    counter_limit BIGINT NOT NULL CHECK (counter_limit >= 0),
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    comment TEXT
);
CREATE INDEX policy_quota_limit_quota ON policy_quota_limit (quota_id);

-- Bump policy_version once per statement that changes a policy table.
CREATE FUNCTION policy_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER policy_group_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_group
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER policy_group_member_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_group_member
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER policy_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER policy_member_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_member
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER policy_access_control_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_access_control
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER policy_quota_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_quota
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();

CREATE TRIGGER policy_quota_limit_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON policy_quota_limit
    FOR EACH STATEMENT EXECUTE FUNCTION policy_version_bump();
