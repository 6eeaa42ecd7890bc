-- The broker's signing key changes (issue 25; decision 0071): each announcement and retirement of a
-- signing key, and the key-change statement made for each clinic, served first in its inbox and
-- acknowledged by the clinic once it has pinned (announce) or dropped (retire) the key.
--
-- Only public keys and key ids are stored here; the seeds stay in the keys folder.
CREATE TABLE broker_key_changes (
    id          uuid PRIMARY KEY,
    action      text NOT NULL CHECK (action IN ('announce', 'retire')),
    old_key_id  text NOT NULL,
    new_key_id  text NOT NULL,
    old_key     bytea NOT NULL CHECK (length(old_key) = 32),
    new_key     bytea NOT NULL CHECK (length(new_key) = 32),
    created_at  timestamptz NOT NULL,
    UNIQUE (action, new_key_id)  -- a key is announced once, and retires its predecessor once
);

CREATE TABLE broker_key_statements (
    id               uuid PRIMARY KEY,  -- the envelope's delivery_id: what the clinic acknowledges
    change_id        uuid NOT NULL REFERENCES broker_key_changes (id),
    clinic_id        uuid NOT NULL REFERENCES clinics (id),
    envelope         bytea NOT NULL,    -- signed envelope; the sealed payload holds only public keys
    created_at       timestamptz NOT NULL,
    acknowledged_at  timestamptz,       -- first acknowledgement; the statement is still served after it
    UNIQUE (change_id, clinic_id)
);
CREATE INDEX broker_key_statements_clinic ON broker_key_statements (clinic_id, created_at);
