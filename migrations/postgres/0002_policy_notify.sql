-- Tell listening edges at once when policies change (LISTEN sluice_policy_changed); the
-- version counter stays the source of truth and is still polled as a safety net.
-- pg_notify is delivered at commit, once per distinct payload per transaction.
CREATE OR REPLACE FUNCTION policy_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE policy_version SET version = version + 1 WHERE id = 1;
    PERFORM pg_notify('sluice_policy_changed', '');
    RETURN NULL;
END;
$$;
