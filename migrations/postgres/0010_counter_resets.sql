-- Counter resets made through the admin service (docs/admin.md, "Live counters"): one row
-- per reset, so that every edge forgets what it holds locally for that counter (its
-- over-limit memo and its lease) within a second. Written in the reset's transaction with
-- its audit entry, which takes this table's lock first, so ids are committed in increasing
-- order and an edge reads every new row as `id > the last one it saw`. Rows older than an
-- hour are pruned by the writer. Does not bump policy_version: a reset changes no policy.
CREATE TABLE counter_resets (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    counter_key TEXT NOT NULL
);

-- Tell listening edges at once (LISTEN sluice_counter_reset); they also poll the table as a
-- safety net.
CREATE FUNCTION counter_reset_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sluice_counter_reset', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER counter_resets_notify AFTER INSERT ON counter_resets
    FOR EACH STATEMENT EXECUTE FUNCTION counter_reset_notify();
