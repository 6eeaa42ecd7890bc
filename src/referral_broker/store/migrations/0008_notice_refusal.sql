-- A notice the clinic could never open (bad signature, another addressee, a box that will not
-- open) is reported like such a referral and leaves the inbox as `refused`, its ciphertext dropped,
-- so it cannot stall the clinic's pull; operators see it in the audit trail and the dashboard.
ALTER TABLE clinic_notices DROP CONSTRAINT clinic_notices_status_check;
ALTER TABLE clinic_notices ADD CONSTRAINT clinic_notices_status_check
    CHECK (status IN ('waiting', 'acknowledged', 'expired', 'refused'));
ALTER TABLE clinic_notices ADD COLUMN last_error text;
ALTER TABLE clinic_notices ADD COLUMN updated_at timestamptz;
