"""Legal holds on referrals: place, release, list, and count the held ones the sweep left alone."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.store.pool import Connection, Executor


@dataclass(frozen=True)
class HoldTarget:
    """A live referral found by its reference, locked for the caller's transaction."""

    id: uuid.UUID
    held_at: datetime | None
    due_from: datetime  # the retention clock's start: last dispatch, or creation if never dispatched
    contact_ct: bytes | None


@dataclass(frozen=True)
class Hold:
    reference: str
    reason: str
    note: str
    held_at: datetime
    held_by: str


async def lock_by_reference(conn: Connection, reference: str) -> HoldTarget | None:
    """The live (not anonymised) referral with this reference, locked; None when there is none."""
    row = await conn.fetchrow(
        """SELECT id, held_at, coalesce(retention_anchor, created_at) AS due_from, contact_ct FROM referrals
           WHERE reference = $1 AND anonymised_at IS NULL FOR UPDATE""",
        reference,
    )
    return HoldTarget(row["id"], row["held_at"], row["due_from"], row["contact_ct"]) if row else None


async def place(conn: Connection, referral_id: uuid.UUID, reason: str, note: str, by: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE referrals SET held_at = $2, hold_reason = $3, hold_note = $4, held_by = $5 WHERE id = $1",
        referral_id, now, reason, note, by,
    )  # fmt: skip


async def release(conn: Connection, referral_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE referrals SET held_at = NULL, hold_reason = NULL, hold_note = NULL, held_by = NULL WHERE id = $1",
        referral_id,
    )


async def current(pool: Executor) -> list[Hold]:
    rows = await pool.fetch(
        """SELECT reference, hold_reason, hold_note, held_at, held_by FROM referrals
           WHERE held_at IS NOT NULL AND anonymised_at IS NULL ORDER BY held_at"""
    )
    return [Hold(r["reference"], r["hold_reason"], r["hold_note"], r["held_at"], r["held_by"]) for r in rows]


async def held_and_due(conn: Connection, cutoff: datetime) -> int:
    """Held referrals the five-month rule would otherwise anonymise now (the `referrals_held` index)."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM referrals WHERE anonymised_at IS NULL AND held_at IS NOT NULL
               AND coalesce(retention_anchor, created_at) <= $1""",
            cutoff,
        )
    )
