-- DELAY quotas (docs/delay.md): how held messages leave, per quota (NULL = the default).
-- (The ledger of held messages lives with the counters: in process with SQLite, in Redis
-- in cluster mode; PostgreSQL keeps none.)

ALTER TABLE policy_quota ADD COLUMN release TEXT;
ALTER TABLE policy_quota ADD COLUMN max_held BIGINT CHECK (max_held >= 1);
ALTER TABLE policy_quota ADD COLUMN max_hold_age BIGINT CHECK (max_hold_age >= 1);
ALTER TABLE policy_quota ADD COLUMN on_expiry TEXT;
