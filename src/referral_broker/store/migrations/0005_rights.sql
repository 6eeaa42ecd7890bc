-- The patient's rights without the manage link: one-time codes sent to a contact detail, the short
-- session a right code opens, and the sealed notices that tell clinics about corrections, erasures
-- and withdrawals (GDPR art. 19). No readable contact detail is stored: a code row holds the blind
-- index of the address it was sent to, and only hashes of the code and the session token.

CREATE TABLE rights_codes (
    id                  uuid PRIMARY KEY,
    channel             text NOT NULL CHECK (channel IN ('email', 'phone')),
    contact_bidx        bytea NOT NULL,
    code_hash           bytea NOT NULL,
    attempts            integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz,
    session_hash        bytea UNIQUE,
    session_expires_at  timestamptz
);
-- Limits per contact detail count the codes sent to it lately.
CREATE INDEX rights_codes_by_contact ON rights_codes (contact_bidx, created_at);
-- The clean-up deletes rows whose code and session have both lapsed.
CREATE INDEX rights_codes_lapse ON rights_codes ((greatest(expires_at, coalesce(session_expires_at, expires_at))));

-- Erasure at the patient's request: the referral is anonymised at once; this says it was erased.
ALTER TABLE referrals ADD COLUMN erased_at timestamptz;

CREATE TABLE clinic_notices (
    id               uuid PRIMARY KEY,
    delivery_id      uuid NOT NULL REFERENCES deliveries (id),
    clinic_id        uuid NOT NULL REFERENCES clinics (id),
    kind             text NOT NULL CHECK (kind IN ('correction', 'erasure', 'withdrawal')),
    status           text NOT NULL CHECK (status IN ('waiting', 'acknowledged', 'expired')),
    envelope         bytea,           -- signed sealed envelope; dropped once acknowledged or expired
    envelope_sha256  bytea NOT NULL,
    recipient_keys   text[] NOT NULL,
    created_at       timestamptz NOT NULL,
    acknowledged_at  timestamptz
);
-- A clinic's waiting notices, oldest first; served once the referral they concern has reached it.
CREATE INDEX clinic_notices_inbox ON clinic_notices (clinic_id, created_at, id) WHERE status = 'waiting';
CREATE INDEX clinic_notices_by_delivery ON clinic_notices (delivery_id);
