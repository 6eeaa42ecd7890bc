"""The clinic API's replay guard: a signed request's nonce is accepted once."""

from __future__ import annotations

from datetime import datetime

from referral_broker.store.pool import Executor


async def first_use(conn: Executor, key_id: str, nonce: str, now: datetime) -> bool:
    """True the first time (key_id, nonce) is seen; False for a replay."""
    row = await conn.fetchrow(
        """INSERT INTO clinic_request_nonces (key_id, nonce, seen_at) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING 1""",
        key_id,
        nonce,
        now,
    )
    return row is not None


async def forget_older_than(conn: Executor, cutoff: datetime) -> int:
    result = await conn.execute("DELETE FROM clinic_request_nonces WHERE seen_at < $1", cutoff)
    return int(result.split()[-1])
