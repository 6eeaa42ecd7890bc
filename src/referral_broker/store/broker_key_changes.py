"""The broker's signing key changes and the key-change statements made for each clinic (migration 0019)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.store.pool import Executor


@dataclass(frozen=True)
class KeyChange:
    id: uuid.UUID
    action: str  # "announce" or "retire"
    old_key_id: str
    new_key_id: str
    old_key: bytes
    new_key: bytes
    created_at: datetime


@dataclass(frozen=True)
class Statement:
    id: uuid.UUID
    change_id: uuid.UUID
    envelope: bytes
    acknowledged_at: datetime | None


@dataclass(frozen=True)
class ClinicPin:
    """Whether a clinic has acknowledged the statement of the current cycle's announcement."""

    slug: str
    status: str
    acknowledged_at: datetime | None


_CHANGE = "id, action, old_key_id, new_key_id, old_key, new_key, created_at"


async def insert_change(
    conn: Executor, *, action: str, old_key_id: str, new_key_id: str, old_key: bytes, new_key: bytes, now: datetime
) -> KeyChange | None:
    """The change recorded now; None when this key was already announced (or its predecessor retired)."""
    row = await conn.fetchrow(
        f"""INSERT INTO broker_key_changes (id, action, old_key_id, new_key_id, old_key, new_key, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (action, new_key_id) DO NOTHING
            RETURNING {_CHANGE}""",  # noqa: S608 - constant columns
        uuid.uuid4(),
        action,
        old_key_id,
        new_key_id,
        old_key,
        new_key,
        now,
    )
    return None if row is None else KeyChange(**dict(row))


async def change(conn: Executor, action: str, new_key_id: str) -> KeyChange | None:
    row = await conn.fetchrow(
        f"SELECT {_CHANGE} FROM broker_key_changes WHERE action = $1 AND new_key_id = $2",  # noqa: S608
        action,
        new_key_id,
    )
    return None if row is None else KeyChange(**dict(row))


async def current_cycle(conn: Executor) -> list[KeyChange]:
    """The latest announcement and what followed it (its retirement), oldest first; [] before any rotation."""
    rows = await conn.fetch(
        f"""SELECT {_CHANGE} FROM broker_key_changes
            WHERE created_at >= (SELECT max(created_at) FROM broker_key_changes WHERE action = 'announce')
            ORDER BY created_at, action"""  # noqa: S608 - constant columns; 'announce' sorts before 'retire'
    )
    return [KeyChange(**dict(r)) for r in rows]


async def statements_of(conn: Executor, clinic_id: uuid.UUID, change_ids: list[uuid.UUID]) -> list[Statement]:
    rows = await conn.fetch(
        """SELECT s.id, s.change_id, s.envelope, s.acknowledged_at
           FROM broker_key_statements s JOIN broker_key_changes c ON c.id = s.change_id
           WHERE s.clinic_id = $1 AND s.change_id = ANY($2::uuid[])
           ORDER BY c.created_at, c.action""",
        clinic_id,
        change_ids,
    )
    return [Statement(**dict(r)) for r in rows]


async def insert_statement(
    conn: Executor,
    *,
    statement_id: uuid.UUID,
    change_id: uuid.UUID,
    clinic_id: uuid.UUID,
    envelope: bytes,
    now: datetime,
) -> bool:
    status = await conn.execute(
        """INSERT INTO broker_key_statements (id, change_id, clinic_id, envelope, created_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (change_id, clinic_id) DO NOTHING""",
        statement_id,
        change_id,
        clinic_id,
        envelope,
        now,
    )
    return str(status).endswith(" 1")


async def acknowledge(
    conn: Executor, clinic_id: uuid.UUID, ids: list[uuid.UUID], now: datetime
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """(acknowledged now, acknowledged before) among `ids` that are statements of this clinic."""
    rows = await conn.fetch(
        """UPDATE broker_key_statements SET acknowledged_at = coalesce(acknowledged_at, $3)
           WHERE clinic_id = $1 AND id = ANY($2::uuid[])
           RETURNING id, acknowledged_at = $3 AS now""",
        clinic_id,
        ids,
        now,
    )
    return [r["id"] for r in rows if r["now"]], [r["id"] for r in rows if not r["now"]]


async def pins(conn: Executor, change_id: uuid.UUID) -> list[ClinicPin]:
    """Every enrolled clinic, and when it acknowledged the announcement `change_id` (None: not yet, or
    no statement was made for it)."""
    rows = await conn.fetch(
        """SELECT c.slug, c.status, s.acknowledged_at
           FROM clinics c LEFT JOIN broker_key_statements s ON s.clinic_id = c.id AND s.change_id = $1
           ORDER BY c.slug""",
        change_id,
    )
    return [ClinicPin(r["slug"], r["status"], r["acknowledged_at"]) for r in rows]


_WAITING_TABLES = {"delivery": "deliveries", "notice": "clinic_notices"}


async def envelopes_signed_by(conn: Executor, kind: str, signer: str, limit: int) -> list[tuple[uuid.UUID, bytes]]:
    """Stored envelopes of `kind` ("delivery" or "notice") still waiting for a clinic that `signer` signed
    (the envelope's JSON `signer` member); locked until the caller's commit."""
    rows = await conn.fetch(
        f"""SELECT id, envelope FROM {_WAITING_TABLES[kind]}
            WHERE envelope IS NOT NULL AND convert_from(envelope, 'UTF8')::jsonb ->> 'signer' = $1
            LIMIT $2 FOR UPDATE""",  # noqa: S608 - a table name from the constant map
        signer,
        limit,
    )
    return [(r["id"], r["envelope"]) for r in rows]


async def replace_envelope(conn: Executor, kind: str, row_id: uuid.UUID, envelope: bytes) -> None:
    table = _WAITING_TABLES[kind]
    await conn.execute(f"UPDATE {table} SET envelope = $2 WHERE id = $1", row_id, envelope)  # noqa: S608
