-- Legal hold (issue 22, docs/decisions/0057): an operator may keep a referral past the retention period
-- while a legal claim or an authority's order needs it. The hold lives on the referral row (at most one at a
-- time; its history is in the audit trail). The note is checked free of contact details before it is stored.

ALTER TABLE referrals ADD COLUMN held_at timestamptz;   -- NULL: not held
ALTER TABLE referrals ADD COLUMN hold_reason text CHECK (hold_reason IN ('legal_claim', 'authority_order'));
ALTER TABLE referrals ADD COLUMN hold_note text;
ALTER TABLE referrals ADD COLUMN held_by text;
ALTER TABLE referrals ADD CONSTRAINT referrals_hold_whole
    CHECK ((held_at IS NULL) = (hold_reason IS NULL) AND (held_at IS NULL) = (hold_note IS NULL)
           AND (held_at IS NULL) = (held_by IS NULL));

-- The sweep's index leaves held referrals out by its predicate, so they cost the sweep nothing however long they
-- wait; the few held ones have a small index of their own, for counting what the sweep skipped.
DROP INDEX referrals_retention_due;
CREATE INDEX referrals_retention_due ON referrals ((coalesce(retention_anchor, created_at)))
    WHERE anonymised_at IS NULL AND held_at IS NULL;
CREATE INDEX referrals_held ON referrals ((coalesce(retention_anchor, created_at)))
    WHERE anonymised_at IS NULL AND held_at IS NOT NULL;
