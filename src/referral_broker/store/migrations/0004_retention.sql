-- Anonymisation: a referral is due five calendar months after its last dispatch (its creation,
-- if never dispatched). The partial expression index makes the sweep cost what it touches: rows
-- already anonymised leave the index, so years of history do not slow it down.

ALTER TABLE referrals ADD COLUMN retention_anchor timestamptz;  -- last dispatch; NULL: never dispatched
ALTER TABLE referrals ADD COLUMN category text;                 -- set only when anonymised, for statistics
ALTER TABLE referrals ALTER COLUMN reference DROP NOT NULL;      -- an anonymised referral has none

UPDATE referrals r SET retention_anchor = d.last
FROM (SELECT referral_id, max(dispatched_at) AS last FROM deliveries GROUP BY referral_id) d
WHERE d.referral_id = r.id AND d.last IS NOT NULL;

CREATE INDEX referrals_retention_due ON referrals ((coalesce(retention_anchor, created_at)))
    WHERE anonymised_at IS NULL;
