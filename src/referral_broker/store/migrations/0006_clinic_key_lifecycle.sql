-- A clinic's keys over their life (issue 9): more than one active encryption key, rotation with an
-- overlap, revocation; and deliveries that no key of the clinic can open, which leave the inbox as
-- 'undeliverable' so operators see them and the patient is asked to submit again.

ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN
    ('queued', 'available', 'acknowledged', 'failed', 'dead', 'cancelled', 'expired', 'undeliverable'));

ALTER TABLE clinic_keys ADD COLUMN replaces uuid REFERENCES clinic_keys (id);  -- rotation: retires it when verified
ALTER TABLE clinic_keys ADD COLUMN endorsed_by text;  -- key id of the clinic's signing key that vouched for it
ALTER TABLE clinic_keys ADD COLUMN state_changed_at timestamptz;
ALTER TABLE clinic_keys ADD COLUMN state_changed_by text;

-- Which waiting deliveries a key still holds (a retiring key retires when none is left; a revoked
-- key's deliveries with no other usable key become undeliverable).
CREATE INDEX deliveries_waiting_by_key ON deliveries USING gin (recipient_keys)
    WHERE status IN ('queued', 'failed', 'dead', 'available');
CREATE INDEX deliveries_undeliverable ON deliveries (clinic_id, updated_at) WHERE status = 'undeliverable';
