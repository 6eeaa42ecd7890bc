"""Sealed notices to clinics (correction, erasure, withdrawal): stored, served, acknowledged, refused, expired."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.store.pool import Connection, Executor

#: A notice is for a clinic whose copy was served (listed in an inbox answer) or acknowledged; the one
#: about a copy still waiting in the inbox travels with it (`attached`), after it in the same answer.
_SERVABLE = "(d.served_at IS NOT NULL OR d.status = 'acknowledged')"


@dataclass(frozen=True)
class NewNotice:
    id: uuid.UUID
    delivery_id: uuid.UUID
    clinic_id: uuid.UUID
    kind: str
    envelope: bytes
    envelope_sha256: bytes
    recipient_keys: list[str]


async def insert(conn: Connection, notices: list[NewNotice], now: datetime) -> None:
    await conn.executemany(
        """INSERT INTO clinic_notices (id, delivery_id, clinic_id, kind, status, envelope, envelope_sha256,
                                       recipient_keys, created_at)
           VALUES ($1, $2, $3, $4, 'waiting', $5, $6, $7, $8)""",
        [
            (n.id, n.delivery_id, n.clinic_id, n.kind, n.envelope, n.envelope_sha256, n.recipient_keys, now)
            for n in notices
        ],
    )


@dataclass(frozen=True)
class NoticeRow:
    id: uuid.UUID
    envelope: bytes
    created_at: datetime  # with the id, its place in the order notices are served in


async def inbox(
    conn: Executor, clinic_id: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[NoticeRow]:
    """Servable notices for the clinic, oldest first (after the place `after`, when given); one more than
    asked, to tell whether there is more. A notice about a copy still waiting in the inbox is not among
    them: it is served with that copy (`attached`), never before it."""
    later = "" if after is None else "AND (n.created_at, n.id) > ($3, $4)"
    rows = await conn.fetch(
        f"""SELECT n.id, n.envelope, n.created_at FROM clinic_notices n JOIN deliveries d ON d.id = n.delivery_id
            WHERE n.clinic_id = $1 AND n.status = 'waiting' AND d.status <> 'available' AND {_SERVABLE} {later}
            ORDER BY n.created_at, n.id LIMIT $2""",  # noqa: S608 - constants, no input
        clinic_id,
        max(limit, 0) + 1,
        *(after or ()),
    )
    return [NoticeRow(r["id"], r["envelope"], r["created_at"]) for r in rows]


async def attached(
    conn: Executor, clinic_id: uuid.UUID, delivery_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[NoticeRow]]:
    """The waiting notices about these deliveries (copies in the clinic's inbox), oldest first, by delivery."""
    if not delivery_ids:
        return {}
    rows = await conn.fetch(
        """SELECT delivery_id, id, envelope, created_at FROM clinic_notices
           WHERE clinic_id = $1 AND delivery_id = ANY($2::uuid[]) AND status = 'waiting'
           ORDER BY created_at, id""",
        clinic_id,
        delivery_ids,
    )
    found: dict[uuid.UUID, list[NoticeRow]] = {}
    for r in rows:
        found.setdefault(r["delivery_id"], []).append(NoticeRow(r["id"], r["envelope"], r["created_at"]))
    return found


async def expire_unserved(conn: Connection, delivery_ids: list[uuid.UUID], now: datetime) -> int:
    """The waiting notices about copies cancelled before they were ever served: no clinic will be told,
    so their ciphertext goes (a correction's holds contact details)."""
    if not delivery_ids:
        return 0
    result = await conn.execute(
        """UPDATE clinic_notices n SET status = 'expired', envelope = NULL, updated_at = $2
           FROM deliveries d
           WHERE d.id = n.delivery_id AND n.delivery_id = ANY($1::uuid[]) AND n.status = 'waiting'
             AND d.served_at IS NULL AND d.status <> 'acknowledged'""",
        delivery_ids,
        now,
    )
    return int(result.split()[-1])


async def acknowledge(
    conn: Connection, clinic_id: uuid.UUID, ids: list[uuid.UUID], now: datetime
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """waiting → acknowledged, ciphertext dropped. Returns (moved now, acknowledged before); scoped to the clinic.

    Only a notice the clinic could have been served moves: an id it guessed for one not yet servable
    is as unknown as any other."""
    return await _settle(conn, clinic_id, ids, "acknowledged", now, None)


async def mark_refused(
    conn: Connection, clinic_id: uuid.UUID, ids: list[uuid.UUID], reason: str, now: datetime
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """waiting → refused for the clinic's own servable notices; returns (moved now, refused before)."""
    return await _settle(conn, clinic_id, ids, "refused", now, reason)


async def _settle(
    conn: Connection, clinic_id: uuid.UUID, ids: list[uuid.UUID], status: str, now: datetime, reason: str | None
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    moved = await conn.fetch(
        f"""UPDATE clinic_notices n SET status = $3, updated_at = $4, envelope = NULL, last_error = $5,
                   acknowledged_at = CASE WHEN $3 = 'acknowledged' THEN $4 ELSE n.acknowledged_at END
            FROM deliveries d
            WHERE d.id = n.delivery_id AND n.clinic_id = $1 AND n.id = ANY($2::uuid[])
              AND n.status = 'waiting' AND {_SERVABLE}
            RETURNING n.id""",  # noqa: S608 - a constant, no input
        clinic_id,
        ids,
        status,
        now,
        reason,
    )
    before = await conn.fetch(
        """SELECT id FROM clinic_notices WHERE clinic_id = $1 AND id = ANY($2::uuid[])
           AND status = $3 AND updated_at < $4""",
        clinic_id,
        ids,
        status,
        now,
    )
    return [r["id"] for r in moved], [r["id"] for r in before]


async def keys_still_holding(conn: Executor, clinic_id: uuid.UUID, key_ids: list[str]) -> set[str]:
    """Which of `key_ids` a waiting notice to the clinic was sealed to (a retiring key still has work)."""
    rows = await conn.fetch(
        """SELECT DISTINCT k FROM clinic_notices, unnest(recipient_keys) AS k
           WHERE clinic_id = $1 AND status = 'waiting' AND k = ANY($2::text[])""",
        clinic_id,
        key_ids,
    )
    return {r["k"] for r in rows}


@dataclass(frozen=True)
class NoticeView:
    """What the patient and operators may see of a notice: its kind, clinic and state."""

    delivery_id: uuid.UUID
    kind: str
    status: str
    created_at: datetime
    acknowledged_at: datetime | None


async def of_referral(conn: Executor, referral_id: uuid.UUID) -> list[NoticeView]:
    rows = await conn.fetch(
        """SELECT n.delivery_id, n.kind, n.status, n.created_at, n.acknowledged_at
           FROM clinic_notices n JOIN deliveries d ON d.id = n.delivery_id
           WHERE d.referral_id = $1 ORDER BY n.created_at, n.id""",
        referral_id,
    )
    return [NoticeView(**dict(r)) for r in rows]


async def expire_older_than(conn: Connection, cutoff: datetime) -> int:
    """Notices nobody fetched within the retention period (an erased referral is anonymised at once,
    so its notices are not reached by the referral sweep)."""
    result = await conn.execute(
        "UPDATE clinic_notices SET status = 'expired', envelope = NULL WHERE status = 'waiting' AND created_at <= $1",
        cutoff,
    )
    return int(result.split()[-1])
