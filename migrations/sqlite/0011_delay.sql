-- DELAY quotas (docs/delay.md): how held messages leave, per quota (NULL = the default),
-- and the ledger of held messages of `sluice serve` (one JSON body per message: the
-- ledger's rules live in sluice_engine::hold; this table only keeps them across restarts).

ALTER TABLE policy_quota ADD COLUMN release TEXT;
ALTER TABLE policy_quota ADD COLUMN max_held BIGINT CHECK (max_held >= 1);
ALTER TABLE policy_quota ADD COLUMN max_hold_age BIGINT CHECK (max_hold_age >= 1);
ALTER TABLE policy_quota ADD COLUMN on_expiry TEXT;

CREATE TABLE held_message (
    id BIGINT PRIMARY KEY,
    mta TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (mta, queue_id)
);
