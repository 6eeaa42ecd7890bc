-- Data-key rotation (docs/decisions/0070): a rights code keeps the address it was sent to, encrypted
-- under the data key like the contact copies and bound to its row, for the code's and its session's
-- short life (it is deleted with the code). A session then finds the patient's referrals by the
-- address's blind index under every readable data key, before, during and after a rotation, instead
-- of by the one index made when the code was sent, which the re-encryption job replaces. NULL on codes
-- made before this migration: they keep using contact_bidx alone until they lapse.
ALTER TABLE rights_codes ADD COLUMN contact_ct bytea;
