-- The anonymisation sweep costs what it touches (issue 7): an anonymised row takes no new entry in
-- an index it no longer belongs to. Updating a row outside PostgreSQL's HOT path writes a new entry
-- into every index whose predicate the new version meets, so:

-- Only live referrals have a reference, a manage-token hash or an idempotency hash: the uniqueness of
-- each is checked among the rows that have one, and anonymised rows (NULL) are no longer indexed.
-- (Unique constraints index NULLs too: every anonymised referral, and every referral sent without an
-- idempotency key, cost an entry in each.) The names keep the words intake recognises a conflict by.
ALTER TABLE referrals DROP CONSTRAINT referrals_reference_key;
ALTER TABLE referrals DROP CONSTRAINT referrals_manage_token_hash_key;
ALTER TABLE referrals DROP CONSTRAINT referrals_idempotency_hash_key;
CREATE UNIQUE INDEX referrals_reference_key ON referrals (reference) WHERE reference IS NOT NULL;
CREATE UNIQUE INDEX referrals_manage_token_hash_key ON referrals (manage_token_hash)
    WHERE manage_token_hash IS NOT NULL;
CREATE UNIQUE INDEX referrals_idempotency_hash_key ON referrals (idempotency_hash)
    WHERE idempotency_hash IS NOT NULL;

-- The time series of the last day reads live rows only; an anonymised row's times are cut to the day
-- and say nothing about an hour.
DROP INDEX referrals_by_created_at;
CREATE INDEX referrals_by_created_at ON referrals (created_at) WHERE anonymised_at IS NULL;

-- A delivery is anonymised with its referral; the same marker takes it out of the time-series indexes.
ALTER TABLE deliveries ADD COLUMN anonymised_at timestamptz;
UPDATE deliveries d SET anonymised_at = r.anonymised_at
FROM referrals r WHERE r.id = d.referral_id AND r.anonymised_at IS NOT NULL;
DROP INDEX deliveries_by_dispatched_at;
DROP INDEX deliveries_by_acknowledged_at;
CREATE INDEX deliveries_by_dispatched_at ON deliveries (dispatched_at)
    WHERE dispatched_at IS NOT NULL AND anonymised_at IS NULL;
CREATE INDEX deliveries_by_acknowledged_at ON deliveries (acknowledged_at)
    WHERE acknowledged_at IS NOT NULL AND anonymised_at IS NULL;

-- (referral_id) is the leading column of UNIQUE (referral_id, clinic_id), which serves every look-up
-- by referral; the second index only cost an entry on every insert and every update outside HOT.
DROP INDEX deliveries_by_referral;
