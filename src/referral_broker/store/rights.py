"""One-time codes and the short sessions they open, and the referrals a contact detail leads to."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from referral_broker.store.pool import Connection, Executor

_BIDX_COLUMN = {"email": "email_bidx", "phone": "phone_bidx"}


#: The class of the advisory locks that serialise sending codes to one contact detail (the two-key form,
#: so it cannot meet the one-key locks of the migrations and the audit chain).
_SENDING_LOCK_CLASS = 0x52420C0D


async def insert_code_within_limit(
    conn: Connection,
    *,
    id: uuid.UUID,
    channel: str,
    contact_bidx: bytes,
    contact_ct: bytes,
    code_hash: bytes,
    now: datetime,
    expires_at: datetime,
    counted_since: datetime,
    limit: int,
) -> bool:
    """Store the code unless `limit` codes were stored for this contact since `counted_since`; True if stored.

    The count and the insert run under a transaction-level advisory lock on the contact's blind index, so
    parallel requests for one address are counted one after another (control 21). The count is its own
    statement, begun once the lock is held, so it sees every code the previous holder committed; in one
    statement it would read a snapshot taken before the wait. A code deleted because sending failed gives
    its place back."""
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            _SENDING_LOCK_CLASS,
            int.from_bytes(contact_bidx[:4], "big", signed=True),
        )
        stored = await conn.fetchval(
            """INSERT INTO rights_codes (id, channel, contact_bidx, code_hash, created_at, expires_at, contact_ct)
               SELECT $1, $2, $3, $4, $5, $6, $9
               WHERE (SELECT count(*) FROM rights_codes WHERE contact_bidx = $3 AND created_at > $7) < $8
               RETURNING id""",
            id, channel, contact_bidx, code_hash, now, expires_at, counted_since, limit, contact_ct,
        )  # fmt: skip
    return stored is not None


async def delete_code(conn: Executor, id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM rights_codes WHERE id = $1", id)


@dataclass(frozen=True)
class CodeRow:
    id: uuid.UUID
    channel: str
    contact_bidx: bytes
    code_hash: bytes
    attempts: int
    expires_at: datetime
    used_at: datetime | None
    contact_ct: bytes | None


async def take_attempt(conn: Connection, id: uuid.UUID, now: datetime, most: int) -> CodeRow | None:
    """Count one try of a live code that has tries left, and return it (locked until the transaction ends).

    None when the code is unknown, used, expired or out of tries. The test and the count are one
    statement on a locked row, so parallel tries are counted one after another and at most `most` of them
    ever compare the code (control 21)."""
    row = await conn.fetchrow(
        """UPDATE rights_codes SET attempts = attempts + 1
           WHERE id = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3
           RETURNING id, channel, contact_bidx, code_hash, attempts, expires_at, used_at, contact_ct""",
        id,
        now,
        most,
    )
    return CodeRow(**dict(row)) if row else None


async def code_exists(conn: Executor, id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rights_codes WHERE id = $1)", id))


async def open_session(
    conn: Connection,
    id: uuid.UUID,
    *,
    session_hash: bytes,
    now: datetime,
    expires_at: datetime,
) -> None:
    await conn.execute(
        """UPDATE rights_codes SET used_at = $2, session_hash = $3, session_expires_at = $4
           WHERE id = $1""",
        id, now, session_hash, expires_at,
    )  # fmt: skip


@dataclass(frozen=True)
class SessionRow:
    code_id: uuid.UUID
    channel: str
    contact_bidx: bytes
    expires_at: datetime
    contact_ct: bytes | None


async def session(conn: Executor, session_hash: bytes, now: datetime) -> SessionRow | None:
    row = await conn.fetchrow(
        """SELECT id, channel, contact_bidx, session_expires_at, contact_ct FROM rights_codes
           WHERE session_hash = $1 AND session_expires_at > $2""",
        session_hash,
        now,
    )
    if row is None:
        return None
    return SessionRow(row["id"], row["channel"], row["contact_bidx"], row["session_expires_at"], row["contact_ct"])


async def end_session(conn: Executor, session_hash: bytes, now: datetime) -> None:
    await conn.execute(
        "UPDATE rights_codes SET session_expires_at = $2 WHERE session_hash = $1 AND session_expires_at > $2",
        session_hash,
        now,
    )


async def delete_lapsed(conn: Executor, now: datetime) -> int:
    """Codes and sessions that can no longer be used: nothing of them is kept.

    A row is kept for the hour after it was made even when lapsed, because the per-address limit counts the
    codes sent in the last hour (deleting a code at its lapse let twice the limit through per hour)."""
    result = await conn.execute(
        """DELETE FROM rights_codes WHERE greatest(expires_at, coalesce(session_expires_at, expires_at)) <= $1
           AND created_at <= $1 - interval '1 hour'""",
        now,
    )
    return int(result.split()[-1])


@dataclass(frozen=True)
class LinkedReferral:
    """A referral a contact detail leads to, with what the rights pages need (the copy is still sealed)."""

    id: uuid.UUID
    reference: str
    created_at: datetime
    consent_version: str
    consent_text_sha256: str
    consent_at: datetime
    withdrawn_at: datetime | None
    retention_anchor: datetime | None
    contact_ct: bytes
    held_at: datetime | None  # under legal hold since (docs/decisions/0057)


_LINKED_COLUMNS = """id, reference, created_at, consent_version, consent_text_sha256, consent_at, withdrawn_at,
                     retention_anchor, contact_ct, held_at"""


async def linked_referrals(conn: Executor, channel: str, contact_bidxs: Sequence[bytes]) -> list[LinkedReferral]:
    """Not yet anonymised referrals whose e-mail or phone (as `channel` says) has one of these blind indexes
    (the address's index under each readable data key)."""
    column = _BIDX_COLUMN[channel]
    rows = await conn.fetch(
        f"""SELECT {_LINKED_COLUMNS} FROM referrals
            WHERE {column} = ANY($1::bytea[]) AND anonymised_at IS NULL ORDER BY created_at DESC""",  # noqa: S608
        list(contact_bidxs),
    )
    return [LinkedReferral(**dict(r)) for r in rows]


async def lock_linked(
    conn: Connection, channel: str, contact_bidxs: Sequence[bytes], reference: str
) -> LinkedReferral | None:
    """One linked referral by its reference, locked until the caller's transaction ends."""
    column = _BIDX_COLUMN[channel]
    row = await conn.fetchrow(
        f"""SELECT {_LINKED_COLUMNS} FROM referrals
            WHERE reference = $2 AND {column} = ANY($1::bytea[]) AND anonymised_at IS NULL FOR UPDATE""",  # noqa: S608
        list(contact_bidxs),
        reference,
    )
    return LinkedReferral(**dict(row)) if row else None


async def update_contact(
    conn: Connection, referral_id: uuid.UUID, *, contact_ct: bytes, email_bidx: bytes, phone_bidx: bytes
) -> None:
    await conn.execute(
        "UPDATE referrals SET contact_ct = $2, email_bidx = $3, phone_bidx = $4 WHERE id = $1",
        referral_id, contact_ct, email_bidx, phone_bidx,
    )  # fmt: skip


async def mark_erased(conn: Connection, referral_id: uuid.UUID, now: datetime) -> None:
    await conn.execute("UPDATE referrals SET erased_at = $2 WHERE id = $1", referral_id, now)


async def manage_token_hash_of(conn: Connection, referral_id: uuid.UUID) -> bytes | None:
    value: bytes | None = await conn.fetchval("SELECT manage_token_hash FROM referrals WHERE id = $1", referral_id)
    return value


async def remember_erased_link(conn: Connection, link_hash: bytes, erased_on: date) -> None:
    """The erased referral's manage link, as a keyed hash and the day (migration 0017: nothing else)."""
    await conn.execute(
        """INSERT INTO erased_manage_links (link_hash, erased_on) VALUES ($1, $2)
           ON CONFLICT (link_hash) DO NOTHING""",
        link_hash,
        erased_on,
    )


async def erased_on(conn: Executor, link_hashes: list[bytes]) -> date | None:
    """The day remembered under any of `link_hashes` (the link's keyed hash under each readable data key)."""
    day: date | None = await conn.fetchval(
        "SELECT erased_on FROM erased_manage_links WHERE link_hash = ANY($1::bytea[]) LIMIT 1", link_hashes
    )
    return day


async def forget_erased_links_before(conn: Connection, day: date) -> int:
    """Delete the erased links remembered for longer than the retention period; how many went."""
    return int(await conn.fetchval(
        "WITH gone AS (DELETE FROM erased_manage_links WHERE erased_on < $1 RETURNING 1) SELECT count(*) FROM gone",
        day,
    ))  # fmt: skip
