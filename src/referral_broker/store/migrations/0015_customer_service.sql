-- Customer service: questions and feedback sent through /kontakt. What the sender wrote (the message,
-- the reply address, a referral reference they quoted) and the operator's answer are stored only as
-- AEAD ciphertext under the broker's data key (`RBC1`, bound to the row); the clear columns say only
-- when, in which language, and where the matter stands. A closed message is deleted by the retention
-- run `REFERRAL_BROKER_CUSTOMER_SERVICE_RETENTION_DAYS` after it was closed.

CREATE TABLE customer_messages (
    id            uuid PRIMARY KEY,
    reference     text NOT NULL UNIQUE,
    language      text NOT NULL CHECK (language IN ('nb', 'nn', 'en')),
    received_at   timestamptz NOT NULL,
    message_ct    bytea NOT NULL,
    can_reply     boolean NOT NULL,
    answer_ct     bytea,
    answered_at   timestamptz,
    closed_at     timestamptz,
    CHECK ((answer_ct IS NULL) = (answered_at IS NULL))
);
-- The operators' list: open ones first, newest first.
CREATE INDEX customer_messages_open ON customer_messages (received_at DESC) WHERE closed_at IS NULL;
-- The retention run deletes what was closed before its cutoff.
CREATE INDEX customer_messages_closed ON customer_messages (closed_at) WHERE closed_at IS NOT NULL;
