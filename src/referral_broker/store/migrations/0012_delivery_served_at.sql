-- When a delivery was first served to its clinic: listed in an answer to the clinic's inbox (issue 19,
-- decision 0139). A correction, withdrawal or erasure notice goes to a clinic only if its copy was served
-- (or acknowledged); a copy cancelled while still unserved was never seen there, so no notice goes to it.
ALTER TABLE deliveries ADD COLUMN served_at timestamptz;

-- Existing rows. An acknowledged copy was served (the clinic acknowledged it after reading it). A copy
-- that is or was waiting in an inbox (available, or cancelled after it had been dispatched) was served if
-- its clinic pulled after it became available; the broker did not record which pages listed it, so it
-- counts as served then: telling a clinic that never had it is the lesser harm than not telling one that has.
UPDATE deliveries SET served_at = COALESCE(dispatched_at, acknowledged_at, updated_at)
    WHERE status = 'acknowledged';
UPDATE deliveries d SET served_at = d.dispatched_at
    FROM clinics c
    WHERE c.id = d.clinic_id AND d.status IN ('available', 'cancelled') AND d.dispatched_at IS NOT NULL
      AND c.last_pull_at >= d.dispatched_at;
