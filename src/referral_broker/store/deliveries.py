"""Delivery state changes. Each is one conditional UPDATE whose WHERE clause comes from the state machine,
so a repeated or racing call finds nothing to change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.domain.delivery import DeliveryStatus, sources_of
from referral_broker.store.pool import Connection, Executor


@dataclass(frozen=True)
class Dispatched:
    id: uuid.UUID
    referral_id: uuid.UUID
    clinic_id: uuid.UUID
    envelope_sha256: bytes


async def make_available(conn: Connection, referral_ids: list[uuid.UUID], now: datetime) -> list[Dispatched]:
    """queued/failed → available for every delivery of these referrals; returns those this call moved."""
    # The same statement moves each referral's retention anchor: it is anonymised five months after
    # its last dispatch.
    rows = await conn.fetch(
        """WITH moved AS (
               UPDATE deliveries SET status = $2, dispatched_at = $3, updated_at = $3, attempts = attempts + 1,
                                     last_error = NULL
               WHERE referral_id = ANY($1::uuid[]) AND status = ANY($4::text[])
               RETURNING id, referral_id, clinic_id, envelope_sha256
           ), anchor AS (
               UPDATE referrals SET retention_anchor = $3 WHERE id IN (SELECT referral_id FROM moved)
           )
           SELECT id, referral_id, clinic_id, envelope_sha256 FROM moved""",
        referral_ids,
        DeliveryStatus.AVAILABLE.value,
        now,
        _from_dispatchable(),
    )
    return [Dispatched(r["id"], r["referral_id"], r["clinic_id"], r["envelope_sha256"]) for r in rows]


def _from_dispatchable() -> list[str]:
    # dead deliveries are only revived by an operator (dead → queued), not by a re-run job
    return [s for s in sources_of(DeliveryStatus.AVAILABLE) if s != DeliveryStatus.DEAD.value]


async def mark(
    conn: Executor,
    referral_id: uuid.UUID,
    target: DeliveryStatus,
    now: datetime,
    *,
    error: str | None = None,
) -> int:
    """Move every delivery of the referral that may reach `target` (failed, dead, …) there."""
    result = await conn.execute(
        """UPDATE deliveries SET status = $2, updated_at = $3, last_error = $4
           WHERE referral_id = $1 AND status = ANY($5::text[]) AND status <> $2""",
        referral_id,
        target.value,
        now,
        error,
        sources_of(target),
    )
    return int(result.split()[-1])


@dataclass(frozen=True)
class InboxRow:
    id: uuid.UUID
    envelope: bytes
    dispatched_at: datetime  # with the id, its place in the inbox's order
    served_at: datetime | None = None  # None: never listed to the clinic before


async def inbox(
    conn: Executor, clinic_id: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[InboxRow]:
    """What waits for the clinic, oldest first (after the place `after`, when given); one row more than
    asked, to tell whether there is more.

    The rows are locked (FOR UPDATE) until the caller's transaction ends: a withdrawal, erasure or
    correction locks the same rows before it decides which clinics to tell, so it sees either the copy
    served (and tells that clinic) or not yet served (and the copy it cancels is never listed, since a row
    cancelled while this waited for its lock no longer matches `status = 'available'`). Call it inside
    a transaction that marks what it serves (`mark_served`)."""
    later = "" if after is None else "AND (dispatched_at, id) > ($3, $4)"
    rows = await conn.fetch(
        f"""SELECT id, envelope, dispatched_at, served_at FROM deliveries
            WHERE clinic_id = $1 AND status = 'available' {later}
            ORDER BY dispatched_at, id LIMIT $2 FOR UPDATE""",  # noqa: S608 - constants, no input
        clinic_id,
        limit + 1,
        *(after or ()),
    )
    return [InboxRow(r["id"], r["envelope"], r["dispatched_at"], r["served_at"]) for r in rows]


async def mark_served(conn: Executor, ids: list[uuid.UUID], now: datetime) -> None:
    """Record that these deliveries were listed to their clinic, the first time only."""
    if ids:
        await conn.execute(
            "UPDATE deliveries SET served_at = $2 WHERE id = ANY($1::uuid[]) AND served_at IS NULL", ids, now
        )


async def acknowledge(
    conn: Connection, clinic_id: uuid.UUID, ids: list[uuid.UUID], now: datetime
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """available → acknowledged and the ciphertext dropped. Returns (moved now, acknowledged before).

    The rows are locked in the order the inbox lists them (the listing locks them too), so a listing and
    an acknowledgement from the same clinic at once wait for each other rather than deadlock.

    Scoped to `clinic_id`: another clinic's delivery id is indistinguishable from an unknown one.
    """
    moved = await conn.fetch(
        """UPDATE deliveries SET status = $3, acknowledged_at = $4, updated_at = $4, envelope = NULL,
                                 served_at = COALESCE(served_at, $4)
           WHERE id IN (SELECT id FROM deliveries
                        WHERE clinic_id = $1 AND id = ANY($2::uuid[]) AND status = ANY($5::text[])
                        ORDER BY dispatched_at, id FOR UPDATE)
             AND status = ANY($5::text[])
           RETURNING id""",
        clinic_id,
        ids,
        DeliveryStatus.ACKNOWLEDGED.value,
        now,
        sources_of(DeliveryStatus.ACKNOWLEDGED),
    )
    before = await conn.fetch(
        """SELECT id FROM deliveries WHERE clinic_id = $1 AND id = ANY($2::uuid[]) AND status = $3
           AND acknowledged_at < $4""",
        clinic_id,
        ids,
        DeliveryStatus.ACKNOWLEDGED.value,
        now,
    )
    return [r["id"] for r in moved], [r["id"] for r in before]


async def insert_receipts(
    conn: Connection,
    receipts: list[tuple[uuid.UUID, uuid.UUID, bytes, datetime, str, bytes]],
) -> None:
    await conn.executemany(
        """INSERT INTO dispatch_receipts (delivery_id, clinic_id, envelope_sha256, dispatched_at, signer, signature)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id) DO NOTHING""",
        receipts,
    )
