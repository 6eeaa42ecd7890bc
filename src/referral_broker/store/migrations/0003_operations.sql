-- Operating the broker: operator accounts and their sessions, login limits, the worker's heartbeat,
-- failure counters, clinic notification settings and the notifications sent. No patient data here.

CREATE TABLE operators (
    id              uuid PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    role            text NOT NULL CHECK (role IN ('operator', 'auditor')),
    password_hash   text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    -- The TOTP secret, AES-256-GCM under a key outside the database, bound to this row's id.
    totp_secret_ct  bytea NOT NULL,
    -- The time-step of the last accepted code: a code is accepted only for a later step, so each once.
    last_totp_step  bigint,
    created_at      timestamptz NOT NULL,
    disabled_at     timestamptz
);

-- Server-side sessions. Only the SHA-256 of the cookie value is stored: a copy of this table lets no
-- one act as an operator.
CREATE TABLE operator_sessions (
    id_hash       bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    operator_id   uuid NOT NULL REFERENCES operators (id),
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    ended_at      timestamptz
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator_id);
CREATE INDEX operator_sessions_age ON operator_sessions (last_seen_at);

-- Failed logins counted per account-and-address and per address, in fixed windows. The key is an
-- HMAC (under the data secret) of the account and address: no IP address is stored in clear, and a
-- row is deleted soon after its window ends.
CREATE TABLE login_throttle (
    key             bytea PRIMARY KEY,
    failures        integer NOT NULL,
    window_ends_at  timestamptz NOT NULL
);

-- Written by a job that goes through the queue, so a recent beat means jobs are being run.
CREATE TABLE worker_heartbeats (
    worker   text PRIMARY KEY,
    beat_at  timestamptz NOT NULL
);

-- Counters of failures by reason, shared by every process (read by /metrics and the dashboard).
CREATE TABLE failure_counts (
    reason   text PRIMARY KEY,
    total    bigint NOT NULL,
    last_at  timestamptz NOT NULL
);

-- Where a clinic wants to be told that something waits for it.
CREATE TABLE clinic_contacts (
    clinic_id    uuid PRIMARY KEY REFERENCES clinics (id),
    email        text,
    webhook_url  text,
    updated_at   timestamptz NOT NULL
);

-- One row per notice to a clinic; `period` makes a second notice for the same batch a no-op.
CREATE TABLE clinic_notifications (
    id               uuid PRIMARY KEY,
    clinic_id        uuid NOT NULL REFERENCES clinics (id),
    kind             text NOT NULL CHECK (kind IN ('available', 'reminder')),
    period           text NOT NULL,
    created_at       timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    email_sent_at    timestamptz,
    webhook_sent_at  timestamptz,
    failures         integer NOT NULL DEFAULT 0,
    last_error       text,
    finished_at      timestamptz,
    UNIQUE (clinic_id, kind, period)
);
CREATE INDEX clinic_notifications_recent ON clinic_notifications (created_at);

-- For the dashboard and /metrics: deliveries not yet in an inbox, and time series over the last day.
CREATE INDEX deliveries_not_delivered ON deliveries (clinic_id, status) WHERE status IN ('queued', 'failed', 'dead');
CREATE INDEX deliveries_by_dispatched_at ON deliveries (dispatched_at) WHERE dispatched_at IS NOT NULL;
CREATE INDEX deliveries_by_acknowledged_at ON deliveries (acknowledged_at) WHERE acknowledged_at IS NOT NULL;
CREATE INDEX referrals_by_created_at ON referrals (created_at);
CREATE INDEX audit_events_by_action ON audit_events (action, at);
CREATE INDEX audit_events_by_at ON audit_events (at);
