-- The core pipeline: clinics and their keys, referrals, deliveries, the outbox, the audit trail,
-- and the clinic API's replay guard. Nothing readable about a referral's need is stored here.

CREATE TABLE clinics (
    id           uuid PRIMARY KEY,
    slug         text NOT NULL UNIQUE,
    name         text NOT NULL,
    city         text,
    categories   text[] NOT NULL DEFAULT '{}',
    description  text,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'suspended')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_pull_at timestamptz
);

CREATE TABLE clinic_keys (
    id          uuid PRIMARY KEY,
    clinic_id   uuid NOT NULL REFERENCES clinics (id),
    purpose     text NOT NULL CHECK (purpose IN ('encryption', 'signing')),
    key_id      text NOT NULL UNIQUE,
    public_key  bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    fingerprint text NOT NULL,
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'active', 'retiring', 'retired', 'revoked')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz,
    verified_by text
);
CREATE INDEX clinic_keys_by_clinic ON clinic_keys (clinic_id, purpose, state);

CREATE TABLE referrals (
    id                  uuid PRIMARY KEY,
    reference           text NOT NULL UNIQUE,
    created_at          timestamptz NOT NULL,
    consent_version     text NOT NULL,
    consent_text_sha256 text NOT NULL,
    consent_at          timestamptz NOT NULL,
    -- AES-256-GCM under a key outside the database, bound to this row's id; NULL once anonymised.
    contact_ct          bytea,
    email_bidx          bytea,
    phone_bidx          bytea,
    manage_token_hash   bytea UNIQUE,
    idempotency_hash    bytea UNIQUE,
    withdrawn_at        timestamptz,
    anonymised_at       timestamptz
);
CREATE INDEX referrals_by_email_bidx ON referrals (email_bidx) WHERE email_bidx IS NOT NULL;
CREATE INDEX referrals_by_phone_bidx ON referrals (phone_bidx) WHERE phone_bidx IS NOT NULL;

CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    referral_id      uuid NOT NULL REFERENCES referrals (id),
    clinic_id        uuid NOT NULL REFERENCES clinics (id),
    status           text NOT NULL CHECK (status IN
                     ('queued', 'available', 'acknowledged', 'failed', 'dead', 'cancelled', 'expired')),
    envelope         bytea,          -- signed sealed envelope; dropped once acknowledged
    envelope_sha256  bytea NOT NULL,
    recipient_keys   text[] NOT NULL, -- key ids of the clinic keys it was sealed to
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    created_at       timestamptz NOT NULL,
    dispatched_at    timestamptz,
    acknowledged_at  timestamptz,
    updated_at       timestamptz NOT NULL,
    UNIQUE (referral_id, clinic_id)
);
-- The clinic inbox: what waits for one clinic, oldest first.
CREATE INDEX deliveries_inbox ON deliveries (clinic_id, dispatched_at, id) WHERE status = 'available';
CREATE INDEX deliveries_by_referral ON deliveries (referral_id);

-- Dispatch receipts: the broker's signed statement that an envelope was made available to a clinic.
CREATE TABLE dispatch_receipts (
    delivery_id      uuid PRIMARY KEY REFERENCES deliveries (id),
    clinic_id        uuid NOT NULL,
    envelope_sha256  bytea NOT NULL,
    dispatched_at    timestamptz NOT NULL,
    signer           text NOT NULL,
    signature        bytea NOT NULL
);

-- The transactional outbox: each row says "this job must run"; it commits with the data it concerns.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    job         text NOT NULL,
    subject_id  uuid NOT NULL,
    due_at      timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    done_at     timestamptz,
    outcome     text,
    UNIQUE (job, subject_id)
);
CREATE INDEX outbox_due ON outbox (due_at) WHERE done_at IS NULL;

-- Tamper-evident audit trail: each row's hash covers the previous row's hash. No content, no person.
CREATE TABLE audit_events (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    subject    text,
    details    jsonb NOT NULL DEFAULT '{}',
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);

-- Nonces of signed clinic requests, kept for longer than a signature stays fresh.
CREATE TABLE clinic_request_nonces (
    key_id   text NOT NULL,
    nonce    text NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX clinic_request_nonces_age ON clinic_request_nonces (seen_at);
