-- The admin service (docs/admin.md): accounts, API tokens, login sessions and the audit
-- trail. None of these tables bumps policy_version: they are not policies. Idempotent
-- (IF NOT EXISTS), so re-applying it over its own tables changes nothing.

-- An account: `role` is admin, viewer or domain-admin; `domains` the comma-separated domains
-- a domain-admin manages (empty for the other roles). `password_hash` is an argon2id PHC
-- string; there is no default account.
CREATE TABLE IF NOT EXISTS admin_account (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'viewer', 'domain-admin')),
    domains TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- An API token: only the SHA-256 of the token (hex) is kept.
CREATE TABLE IF NOT EXISTS admin_token (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES admin_account (id) ON DELETE CASCADE,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

-- A login session: only the SHA-256 of the session cookie (hex) is kept, with the session's
-- CSRF token and when it ends.
CREATE TABLE IF NOT EXISTS admin_session (
    session_hash TEXT PRIMARY KEY NOT NULL,
    account_id INTEGER NOT NULL REFERENCES admin_account (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_session_expires ON admin_session (expires_ms);

-- Every change made through the admin service: who (account name), when, from where (client
-- address), what (action and object) and the object before and after (JSON; NULL when it did
-- not exist).
CREATE TABLE IF NOT EXISTS admin_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    client TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX IF NOT EXISTS admin_audit_at ON admin_audit (at_ms);
