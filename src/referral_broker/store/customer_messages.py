"""Customer-service messages: ciphertext and the few clear facts an operator's list needs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from referral_broker.store.pool import Connection, Executor


@dataclass(frozen=True)
class StoredMessage:
    id: uuid.UUID
    reference: str
    language: str
    received_at: datetime
    can_reply: bool
    answered_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True)
class SealedMessage:
    facts: StoredMessage
    message_ct: bytes
    answer_ct: bytes | None


_FACTS = "id, reference, language, received_at, can_reply, answered_at, closed_at"


async def insert(
    conn: Executor,
    *,
    id: uuid.UUID,
    reference: str,
    language: str,
    received_at: datetime,
    message_ct: bytes,
    can_reply: bool,
) -> bool:
    """False when the reference is taken (the caller draws another)."""
    done = await conn.fetchval(
        """INSERT INTO customer_messages (id, reference, language, received_at, message_ct, can_reply)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (reference) DO NOTHING RETURNING true""",
        id, reference, language, received_at, message_ct, can_reply,
    )  # fmt: skip
    return bool(done)


async def listing(conn: Executor, *, closed: bool, limit: int = 200) -> list[StoredMessage]:
    """Open messages oldest first (the longest waiting on top), or closed ones most recently closed first."""
    if closed:
        sql = f"SELECT {_FACTS} FROM customer_messages WHERE closed_at IS NOT NULL ORDER BY closed_at DESC LIMIT $1"  # noqa: S608 - fixed column list
    else:
        sql = f"SELECT {_FACTS} FROM customer_messages WHERE closed_at IS NULL ORDER BY received_at LIMIT $1"  # noqa: S608 - fixed column list
    return [StoredMessage(**dict(r)) for r in await conn.fetch(sql, limit)]


async def counts(conn: Executor) -> dict[str, int]:
    """How many messages are open and how many closed (waiting to be deleted): numbers only, for /metrics."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE closed_at IS NULL) AS open,
                  count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed
           FROM customer_messages"""
    )
    assert row is not None  # noqa: S101 - an aggregate without GROUP BY always gives one row
    return {"open": int(row["open"]), "closed": int(row["closed"])}


async def by_id(conn: Executor, message_id: uuid.UUID) -> SealedMessage | None:
    row = await conn.fetchrow(
        f"SELECT {_FACTS}, message_ct, answer_ct FROM customer_messages WHERE id = $1",  # noqa: S608 - fixed column list
        message_id,
    )
    if row is None:
        return None
    facts = {k: row[k] for k in _FACTS.split(", ")}
    answer = row["answer_ct"]
    return SealedMessage(StoredMessage(**facts), bytes(row["message_ct"]), bytes(answer) if answer else None)


async def record_answer(conn: Connection, message_id: uuid.UUID, answer_ct: bytes, at: datetime) -> bool:
    """Store the answer on an open message; False when it is closed or gone."""
    result = await conn.execute(
        "UPDATE customer_messages SET answer_ct = $2, answered_at = $3 WHERE id = $1 AND closed_at IS NULL",
        message_id,
        answer_ct,
        at,
    )
    return bool(result.endswith(" 1"))


async def close(conn: Connection, message_id: uuid.UUID, at: datetime) -> bool:
    """Open → closed; False when it was closed already or is gone."""
    result = await conn.execute(
        "UPDATE customer_messages SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL", message_id, at
    )
    return bool(result.endswith(" 1"))


async def delete_closed_before(conn: Connection, cutoff: datetime) -> int:
    """Delete every message closed at or before `cutoff`; how many went."""
    result = await conn.execute("DELETE FROM customer_messages WHERE closed_at <= $1", cutoff)
    return int(result.split()[-1])
