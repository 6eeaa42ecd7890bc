"""The anonymisation sweep's SQL: pick a batch of due referrals, strip them, report what was done."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.domain.delivery import DeliveryStatus, sources_of
from referral_broker.store.pool import Connection

#: The sweep's selection; also what the EXPLAIN test inspects. Held referrals (legal hold) are outside the partial
#: index `referrals_retention_due` by its predicate, so they cost the sweep nothing.
DUE_BATCH_SQL = """
    SELECT id, contact_ct FROM referrals
    WHERE anonymised_at IS NULL AND held_at IS NULL AND coalesce(retention_anchor, created_at) <= $1
    ORDER BY coalesce(retention_anchor, created_at)
    LIMIT $2
    FOR UPDATE SKIP LOCKED"""


@dataclass(frozen=True)
class DueReferral:
    id: uuid.UUID
    contact_ct: bytes | None


async def due_batch(conn: Connection, cutoff: datetime, limit: int) -> list[DueReferral]:
    return [DueReferral(r["id"], r["contact_ct"]) for r in await conn.fetch(DUE_BATCH_SQL, cutoff, limit)]


async def anonymise(conn: Connection, ids: list[uuid.UUID], categories: list[str | None], now: datetime) -> int:
    """Strip a batch inside the caller's transaction; returns how many undelivered deliveries expired.

    Kept: the random id, the day, the consent version, clinic, category and outcome.
    Deleted: contact copy, blind indexes, manage-token and idempotency hashes, the reference, any
    ciphertext still waiting (undelivered deliveries, and clinic notices not yet served: a correction
    may hold the old details), dispatch receipts; times are cut to the day.

    One statement, one round trip: each delivery is rewritten once (undelivered ones expire, every one
    loses its ciphertext and its times are cut to the day), found through UNIQUE (referral_id,
    clinic_id); receipts and waiting notices are found by the ids that UPDATE returns, not looked up by
    referral again. (Two UPDATEs wrote every delivery twice, and a status filter led the planner to
    scan the index of all waiting deliveries, which grows with the table.)
    """
    expired = await conn.fetchval(
        """WITH stripped AS (
               UPDATE deliveries SET
                   status = CASE WHEN status = ANY($4::text[]) THEN $2 ELSE status END,
                   envelope = NULL,
                   created_at = date_trunc('day', created_at),
                   dispatched_at = date_trunc('day', dispatched_at),
                   acknowledged_at = date_trunc('day', acknowledged_at),
                   served_at = date_trunc('day', served_at),
                   updated_at = CASE WHEN status = ANY($4::text[]) THEN date_trunc('day', $3::timestamptz)
                                     ELSE date_trunc('day', updated_at) END,
                   last_error = NULL,
                   anonymised_at = $3
               WHERE referral_id = ANY($1::uuid[])
               RETURNING id, status
           ), receipts AS (
               DELETE FROM dispatch_receipts WHERE delivery_id IN (SELECT id FROM stripped)
           ), notices AS (
               UPDATE clinic_notices SET status = 'expired', envelope = NULL
               WHERE status = 'waiting' AND delivery_id IN (SELECT id FROM stripped)
           ), referral AS (
               UPDATE referrals r SET contact_ct = NULL, email_bidx = NULL, phone_bidx = NULL,
                      manage_token_hash = NULL, idempotency_hash = NULL, reference = NULL,
                      category = c.category, anonymised_at = $3,
                      created_at = date_trunc('day', r.created_at),
                      consent_at = date_trunc('day', r.consent_at),
                      retention_anchor = date_trunc('day', r.retention_anchor),
                      withdrawn_at = date_trunc('day', r.withdrawn_at)
               FROM unnest($1::uuid[], $5::text[]) AS c(id, category)
               WHERE r.id = c.id
           ), outbox_done AS (
               UPDATE outbox SET done_at = $3, outcome = 'anonymised'
               WHERE subject_id = ANY($1::uuid[]) AND done_at IS NULL
           )
           SELECT count(*) FROM stripped WHERE status = $2""",
        ids, DeliveryStatus.EXPIRED.value, now, sources_of(DeliveryStatus.EXPIRED), categories,
    )  # fmt: skip
    return int(expired)
